"""Multiple choice (CaseHOLD-shaped): a context and lettered options; the chosen letter must be the gold one."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from engine.config.schema import DataConfig, TaskConfig
from engine.tasks.base import Example, Task
from engine.tasks.common import RowProblem, fill_template, normalise_answer, raw_key
from engine.tasks.prompt_templates import load_template
from engine.tasks.teacher_prompt import (
    NO_DIVERSITY,
    NOT_VALID,
    Diversity,
    bounded_string,
    clip,
    examples_schema,
    object_schema,
    pick_schema,
    pick_verdict,
    student_said,
    teacher_chat,
    verify_chat,
)
from models.errors import ConfigError

DEFAULT_PROMPT = "{input}\n{choices}\nAnswer:"
DEFAULT_LETTERS = ["A", "B", "C", "D", "E"]


class MultipleChoiceTask(Task):
    """Options are lettered A, B, ... (task.labels, default A-E); the student is scored on ' A', ' B', ..."""

    kind = "multiple_choice"
    default_prompt = DEFAULT_PROMPT
    verifies = True
    context_chars = 900
    option_chars = 200
    reason_chars = 200

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self.letters = list(cfg.labels or DEFAULT_LETTERS)
        if len(self.letters) < 2 or len({x.casefold() for x in self.letters}) != len(self.letters) or \
                not all(re.fullmatch(r"[A-Za-z0-9]{1,3}", x) for x in self.letters):
            raise ConfigError("task.labels: for multiple_choice, the option names (at least 2, distinct, short "
                              f"letters or digits such as A, B, C); got {self.letters}")
        self._index = {x.casefold(): i for i, x in enumerate(self.letters)}
        alternatives = "|".join(re.escape(x) for x in self.letters)
        self._leading = re.compile(rf"^[\s(\[\"'*]*(?:option\s+|answer\s*:?\s*)?({alternatives})(?![A-Za-z0-9])", re.IGNORECASE)

    def options_block(self, choices: tuple[str, ...] | None) -> str:
        """'A. first option' lines."""
        return "\n".join(f"{letter}. {text}" for letter, text in zip(self.letters, choices or (), strict=False))

    def render_prompt(self, ex: Example) -> str:
        """The template with {input} and {choices}; options are appended when the template has no {choices}."""
        template = self.prompt_template
        if "{choices}" not in template:
            head, sep, tail = template.rpartition("\n")
            template = f"{head}\n{{choices}}\n{tail}" if sep else f"{{choices}}\n{template}"
        return fill_template(template, input=ex.input, choices=self.options_block(ex.choices))

    def response_for(self, letter: str, choices: tuple[str, ...]) -> str:
        """' A', or ' <the option's text>' when task.choice_format is 'text'."""
        if self.cfg.choice_format == "text":
            return " " + choices[self._index[letter.casefold()]]
        return " " + letter

    def label_options(self, ex: Example) -> list[str] | None:
        """One continuation per option of this example: its letter, or its text."""
        if self.cfg.choice_format == "text":
            return [" " + choice for choice in ex.choices or ()]
        return [" " + letter for letter in self.letters[: len(ex.choices or self.letters)]]

    @property
    def stop(self) -> list[str]:
        """The answer is one letter on one line."""
        return ["\n"]

    def extract(self, output: str, ex: Example) -> str | None:
        """The option letter the output starts with; with choice_format 'text', the letter of the option it starts with."""
        if self.cfg.choice_format == "text":
            said = normalise_answer(output)
            by_length = sorted(enumerate(ex.choices or ()), key=lambda item: -len(item[1]))
            for i, choice in by_length:
                if said.startswith(normalise_answer(choice)) and normalise_answer(choice):
                    return self.letters[i]
            return None
        m = self._leading.match(output)
        return self.letters[self._index[m.group(1).casefold()]] if m else None

    def is_correct(self, predicted: str | None, ex: Example) -> bool:
        """Same option letter."""
        return predicted is not None and predicted.casefold() == ex.answer.casefold()

    def gold_letter(self, target: Any, n: int) -> str | None:
        """The letter of a gold value given as an index (0-based, as in CaseHOLD) or as a letter."""
        key = raw_key(target)
        if key.isdigit() and int(key) < n:
            return self.letters[int(key)]
        i = self._index.get(key.casefold())
        return self.letters[i] if i is not None and i < n else None

    def example_from_fields(self, text: str, target: Any, choices: list[str] | None, fields: DataConfig | None = None) -> Example:
        """An Example from a row's context, options and gold index/letter."""
        if not choices:
            raise RowProblem("no options (set data.choices_field)")
        if len(choices) != len(self.letters):
            raise RowProblem(f"{len(choices)} options, but task.labels names {len(self.letters)} "
                             f"({', '.join(self.letters)}); set task.labels to the option letters")
        letter = self.gold_letter(target, len(choices))
        if letter is None:
            raise RowProblem(f"answer {raw_key(target)!r} is not an option (0-{len(choices) - 1} or "
                             f"{', '.join(self.letters[: len(choices)])})")
        return Example(input=text, target=self.response_for(letter, tuple(choices)), answer=letter, choices=tuple(choices))

    # teacher ------------------------------------------------------------------------------------------
    def teacher_messages(self, ex: Example, student_output: str | None, k: int, *, is_miss: bool = True,
                         grounding: Sequence[Example] = (), diversity: Diversity = NO_DIVERSITY) -> list[dict[str, str]]:
        """Ask for k new questions that test the same distinction, with plausible wrong options."""
        n = len(self.letters)
        limit = 2 * self.context_chars + n * self.option_chars
        return teacher_chat(load_template("multiple_choice").render(
            task=self.cfg.description or "Pick the option that correctly completes or answers the context.",
            n_options=n, k=k, question=clip(self.render_prompt(ex), limit), answer=ex.answer, is_miss=is_miss,
            student_answer=student_said(student_output, self.extract(student_output or "", ex)),
            grounding=[clip(g.input, self.context_chars) for g in grounding], **diversity.inputs()))

    def teacher_schema(self, k: int) -> dict[str, Any]:
        """{'what_made_it_hard', 'examples': [{'context', 'options': n strings, 'answer': letter}] × k}."""
        n = len(self.letters)
        item = object_schema({
            "context": bounded_string(self.context_chars, 20),
            "options": {"type": "array", "items": bounded_string(self.option_chars), "minItems": n, "maxItems": n},
            "answer": {"type": "string", "enum": self.letters},
        })
        return examples_schema(item, k, extra={"what_made_it_hard": bounded_string(self.reason_chars)})

    def parse_teacher(self, reply: dict[str, Any], parent: Example) -> list[Example]:
        """Examples from the reply; the teacher's diagnosis goes to meta."""
        hard = str(reply.get("what_made_it_hard", "")).strip()
        out = []
        for item in reply.get("examples", []):
            options = tuple(str(o).strip() for o in item.get("options", []))
            answer = str(item.get("answer", "")).strip()
            valid = answer.casefold() in self._index and self._index[answer.casefold()] < len(options)
            target = self.response_for(answer, options) if valid else " " + answer
            out.append(Example(input=str(item.get("context", "")).strip(), target=target, answer=answer,
                               choices=options, meta={"what_made_it_hard": hard}))
        return out

    def verify_messages(self, ex: Example, shots: Sequence[Example] = ()) -> list[dict[str, str]]:
        """The question and its lettered options, without the answer (no shots: each question brings its options)."""
        n = len(self.letters)
        question = clip(f"{ex.input}\n{self.options_block(ex.choices)}", 2 * self.context_chars + n * self.option_chars)
        return verify_chat(load_template("verify_multiple_choice").render(
            task=self.cfg.description or "Pick the option that correctly completes or answers the context.",
            question=question, not_valid=NOT_VALID))

    def verify_schema(self) -> dict[str, Any]:
        """{'answer': a letter or 'not a valid input'}."""
        return pick_schema("answer", self.letters)

    def verify_verdict(self, reply: dict[str, Any], ex: Example) -> str | None:
        """'not_a_task', 'label_disagrees' or None."""
        return pick_verdict(reply, "answer", ex.answer)

    def reject_reason(self, ex: Example) -> str | None:
        """'empty_input', 'wrong_option_count', 'empty_option', 'duplicate_options' or 'label_not_in_set'."""
        if not ex.input.strip():
            return "empty_input"
        choices = ex.choices or ()
        if len(choices) != len(self.letters):
            return "wrong_option_count"
        if any(not c.strip() for c in choices):
            return "empty_option"
        if len({c.casefold() for c in choices}) != len(choices):
            return "duplicate_options"
        if ex.answer.casefold() not in self._index:
            return "label_not_in_set"
        return None
