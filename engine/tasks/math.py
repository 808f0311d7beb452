"""Math word problems with a numeric final answer (GSM8K rationales ending '#### N', or number-only targets)."""

from __future__ import annotations

import ast
import json
import operator
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from engine.config.schema import DataConfig
from engine.tasks.base import Example, Task
from engine.tasks.common import RowProblem, target_name
from engine.tasks.prompt_templates import load_template
from engine.tasks.teacher_prompt import (
    NO_DIVERSITY,
    Diversity,
    bounded_string,
    clip,
    examples_schema,
    object_schema,
    student_said,
    teacher_chat,
    verify_chat,
)

# A number in running text: optional sign (not after a word/digit, so '48-24' is 48 and 24), optional '$',
# thousands groups ('1,080'), optional decimals ('.5' too). '−' (U+2212) counts as a minus sign.
NUMBER_RE = re.compile(
    r"(?:(?P<sign>(?<![\w.)\]])[-−])\$?|\$)?(?<![\d.])(?P<num>(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?|\.\d+)"
)
_BARE_NUMBER = re.compile(r"\s*" + NUMBER_RE.pattern + r"\s*%?\s*")
_ANSWER_IS = re.compile(r"answer\s*(?:is|:|=)", re.IGNORECASE)
_CALC_NOTE = re.compile(r"<<([^<>=]*)=([^<>]*)>>")
_TOLERANCE = Decimal("1e-6")

DEFAULT_PROMPT = "Question: {input}\nAnswer:"
DEFAULT_DESCRIPTION = "Grade-school math word problems: read the problem, reason step by step, give the final number."

# A worked demonstration shown to the teacher before the real request: small instruct models otherwise solve
# the shown problem instead of writing new ones (see /work/shared/models.md).
_DEMO_PROBLEM = "Tom has 3 boxes with 12 pencils in each box. He gives away 10 pencils. How many pencils does he have left?"
_DEMO_SOLUTION = "Tom has 3 * 12 = <<3*12=36>>36 pencils.\nAfter giving away 10, he has 36 - 10 = <<36-10=26>>26 pencils.\n#### 26"
_DEMO_REPLY = {
    "examples": [{
        "question": "A baker fills 4 trays with 15 muffins each. She sells 23 muffins. How many muffins are left?",
        "solution": "She baked 4 * 15 = <<4*15=60>>60 muffins.\nAfter selling 23, 60 - 23 = <<60-23=37>>37 muffins are left.\n#### 37",
        "answer": 37,
    }]
}


def _match_value(m: re.Match[str]) -> Decimal:
    value = Decimal(m.group("num").replace(",", ""))
    return -value if m.group("sign") else value


def numbers_in(text: str) -> list[Decimal]:
    """Every number in the text, in order."""
    return [_match_value(m) for m in NUMBER_RE.finditer(text)]


def final_number(text: str) -> Decimal | None:
    """The answer of a solution or output: first number after the last '####', else after the last
    'answer is', else the last number in the text."""
    cut = text.rfind("####")
    if cut >= 0:
        m = NUMBER_RE.search(text, cut + 4)
        if m:
            return _match_value(m)
    marks = list(_ANSWER_IS.finditer(text))
    if marks:
        m = NUMBER_RE.search(text, marks[-1].end())
        if m:
            return _match_value(m)
    values = numbers_in(text)
    return values[-1] if values else None


def parse_number(value: Any) -> Decimal | None:
    """A JSON number or a number written as text ('1,080', '$5.50', '-7') as a Decimal; None if it is not one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, float):
        try:
            return Decimal(repr(value)) if value == value and abs(value) != float("inf") else None
        except InvalidOperation:
            return None
    if isinstance(value, Decimal):
        return value if value.is_finite() else None
    m = _BARE_NUMBER.fullmatch(str(value))
    if not m:
        return None
    return _match_value(NUMBER_RE.search(str(value)))  # type: ignore[arg-type]


def canonical(value: Decimal) -> str:
    """Plain decimal notation without trailing zeros: 43.0 → '43', 5.50 → '5.5', -0 → '0'."""
    if value == value.to_integral_value():
        return str(int(value))
    return format(value.normalize(), "f")


def numbers_equal(a: Decimal, b: Decimal) -> bool:
    """Equal up to a relative tolerance of 1e-6 (so 0.1+0.2 style float noise does not count as a miss)."""
    return abs(a - b) <= _TOLERANCE * max(Decimal(1), abs(b))


# --- the <<a*b=c>> calculator notes of GSM8K rationales -------------------------------------------------
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


def _eval_node(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _eval_node(node.body)
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return Fraction(str(node.value))
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _eval_node(node.operand)
        return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.BinOp):
        left, right = _eval_node(node.left), _eval_node(node.right)
        if isinstance(node.op, ast.Pow):
            if right.denominator != 1 or abs(right) > 12 or abs(left) > 10**6:
                raise ValueError("power too large to check")
            return left ** int(right)
        op = _OPS.get(type(node.op))
        if op is None:
            raise ValueError("operator not allowed")
        return Fraction(op(left, right))
    raise ValueError("not arithmetic")


def safe_eval(expression: str) -> Fraction | None:
    """Value of a plain arithmetic expression (+ - * / // % ** and parentheses), or None if it is anything else."""
    text = expression.replace("$", "").replace("×", "*").replace("÷", "/").replace("−", "-").strip()
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    if not text or len(text) > 200:
        return None
    try:
        return _eval_node(ast.parse(text, mode="eval"))
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError, TypeError, RecursionError):
        return None


def wrong_calc_notes(solution: str) -> list[str]:
    """The `<<expr=result>>` notes whose result is not the expression's value (rounded results are accepted)."""
    wrong = []
    for m in _CALC_NOTE.finditer(solution):
        computed = safe_eval(m.group(1))
        stated = parse_number(m.group(2).strip())
        if computed is None or stated is None:
            continue  # not checkable: leave it to the other filters
        exponent = stated.as_tuple().exponent
        decimals = max(0, -exponent) if isinstance(exponent, int) else 0
        allowed = Fraction(1, 2 * 10**decimals) + Fraction(1, 10**9) * max(Fraction(1), abs(Fraction(stated)))
        if abs(computed - Fraction(stated)) > allowed:
            wrong.append(m.group(0))
    return wrong


def is_number_only(response: str) -> bool:
    """Whether a training response is just the answer (' The answer is 43.'), not a worked solution."""
    return re.fullmatch(r"\s*The answer is " + NUMBER_RE.pattern + r"\.\s*", response) is not None


def number_only_response(answer: str) -> str:
    """The training response for data that has only a number (e.g. MAWPS)."""
    return f" The answer is {answer}."


class MathTask(Task):
    """Numeric answer: the final number (after '####', else after 'answer is', else the last one) must equal gold."""

    kind = "math"
    default_prompt = DEFAULT_PROMPT
    verifies = True
    question_chars = 400
    solution_chars = 700



    @property
    def stop(self) -> list[str]:
        """Stop at a blank line or when the model starts a new question."""
        return ["\n\n", "\nQuestion:"]

    def extract(self, output: str, ex: Example) -> str | None:
        """The output's final number in canonical form."""
        value = final_number(output)
        return canonical(value) if value is not None else None

    def is_correct(self, predicted: str | None, ex: Example) -> bool:
        """Compare as numbers (sign kept, commas and '$' ignored)."""
        if predicted is None:
            return False
        got, gold = parse_number(predicted), parse_number(ex.answer)
        return got is not None and gold is not None and numbers_equal(got, gold)

    def example_from_fields(self, text: str, target: Any, choices: list[str] | None, fields: DataConfig | None = None) -> Example:
        """An Example from a data row's text and target (a rationale ending '#### N', or a bare number)."""
        value = parse_number(target)
        if value is not None:
            answer = canonical(value)
            return Example(input=text, target=number_only_response(answer), answer=answer)
        if not isinstance(target, str):
            raise RowProblem(f"field '{target_name(fields)}' is {type(target).__name__}, expected a number or a solution ending '#### N'")
        solution = target.strip()
        cut = solution.rfind("####")
        m = NUMBER_RE.search(solution, cut + 4) if cut >= 0 else None
        if m is None:
            raise RowProblem(f"field '{target_name(fields)}' has no final number ('#### N')")
        return Example(input=text, target=" " + solution, answer=canonical(_match_value(m)))

    # teacher ------------------------------------------------------------------------------------------
    def teacher_messages(self, ex: Example, student_output: str | None, k: int, *, is_miss: bool = True,
                         grounding: Sequence[Example] = (), diversity: Diversity = NO_DIVERSITY) -> list[dict[str, str]]:
        """System + a worked demonstration + the request (static part first so the prefix is shared)."""
        template = load_template("math")
        task = self.cfg.description or DEFAULT_DESCRIPTION
        demo = template.render(task=task, k=1, problem=_DEMO_PROBLEM, solution=_DEMO_SOLUTION, is_miss=True,
                               student_answer=student_said("36 pencils", "36"), grounding=[],
                               **NO_DIVERSITY.inputs())
        gold = ex.target.strip()
        if is_number_only(ex.target):
            gold = f"(only the answer is known) #### {ex.answer}"
        request = template.render(
            task=task, k=k, problem=clip(ex.input, 2 * self.question_chars), solution=clip(gold, 2 * self.solution_chars),
            is_miss=is_miss, student_answer=student_said(student_output, self.extract(student_output or "", ex)),
            grounding=[clip(g.input, self.question_chars) for g in grounding], **diversity.inputs())
        return teacher_chat(request, worked=(demo, json.dumps(_DEMO_REPLY)))

    def teacher_schema(self, k: int) -> dict[str, Any]:
        """{'examples': [{'question', 'solution', 'answer': number}] × k}, strings bounded."""
        item = object_schema({
            "question": bounded_string(self.question_chars, 20),
            "solution": bounded_string(self.solution_chars, 10),
            "answer": {"type": "number"},
        })
        return examples_schema(item, k)

    def parse_teacher(self, reply: dict[str, Any], parent: Example) -> list[Example]:
        """Examples from the reply; the solution is kept in meta so reject_reason can check it against the answer."""
        number_only = is_number_only(parent.target)
        out = []
        for item in reply.get("examples", []):
            question = str(item.get("question", "")).strip()
            solution = str(item.get("solution", "")).strip()
            declared = parse_number(item.get("answer"))
            answer = canonical(declared) if declared is not None else str(item.get("answer", ""))
            if number_only:
                target = number_only_response(answer)
            else:
                target = " " + solution
                if "####" not in solution:
                    found = final_number(solution)
                    if found is not None:  # keep the GSM8K layout; the number is the solution's own, not the declared one
                        target += f"\n#### {canonical(found)}"
            out.append(Example(input=question, target=target, answer=answer,
                               meta={"solution": solution, "teacher_answer": item.get("answer")}))
        return out

    def verify_messages(self, ex: Example, shots: Sequence[Example] = ()) -> list[dict[str, str]]:
        """The problem alone, to be solved independently (no shots: a solve needs no label names explained)."""
        return verify_chat(load_template("verify_math").render(task=self.cfg.description or DEFAULT_DESCRIPTION,
                                                               problem=clip(ex.input, 2 * self.question_chars)))

    def verify_schema(self) -> dict[str, Any]:
        """{'solution': text, 'answer': number}."""
        return object_schema({"solution": bounded_string(self.solution_chars, 1), "answer": {"type": "number"}})

    def verify_verdict(self, reply: dict[str, Any], ex: Example) -> str | None:
        """'solve_disagrees' when the independent solve reaches another final number, else None."""
        got, want = parse_number(reply.get("answer")), parse_number(ex.answer)
        return None if got is not None and want is not None and numbers_equal(got, want) else "solve_disagrees"

    def reject_reason(self, ex: Example) -> str | None:
        """'empty_input', 'no_number', 'answer_mismatch' (solution's final number ≠ answer) or 'calc_mismatch'."""
        if not ex.input.strip():
            return "empty_input"
        solution = str(ex.meta.get("solution") or ex.target)
        found, declared = final_number(solution), parse_number(ex.answer)
        if found is None or declared is None:
            return "no_number"
        if not numbers_equal(found, declared):
            return "answer_mismatch"
        if wrong_calc_notes(solution):
            return "calc_mismatch"
        return None
