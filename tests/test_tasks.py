"""Task kinds on real rows: answer extraction, scoring, prompts, and the teacher boundary (messages, schema, parsing)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.schema import RunConfig, TaskConfig, resolve
from engine.data.load import load_splits
from engine.tasks.base import Example, Task
from engine.tasks.classification import ClassificationTask
from engine.tasks.free_text import FreeTextTask
from engine.tasks.math import MathTask, canonical, final_number, parse_number, safe_eval, wrong_calc_notes
from engine.tasks.multiple_choice import MultipleChoiceTask
from engine.tasks.registry import make_task
from engine.tasks.teacher_prompt import max_reply_chars
from models.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures"


def jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def preset_task(name: str) -> Task:
    return make_task(resolve({"task": {"preset": name}}).task)


def roundtrip(ex: Example) -> Example:
    """The example as the loop sees it after the store (meta through JSON)."""
    return Example(input=ex.input, target=ex.target, answer=ex.answer, choices=ex.choices,
                   meta=json.loads(json.dumps(ex.meta)))


def assert_bounded(schema: dict[str, Any], where: str = "$") -> None:
    """Every string has a maxLength and every array a maxItems (a reply cut at max_tokens is invalid JSON)."""
    kind = schema.get("type")
    if kind == "string" and "enum" not in schema:
        assert "maxLength" in schema, f"{where}: unbounded string"
    if kind == "array":
        assert "maxItems" in schema, f"{where}: unbounded array"
        assert_bounded(schema["items"], where + "[]")
    if kind == "object":
        assert schema.get("additionalProperties") is False, f"{where}: open object"
        for name, sub in schema["properties"].items():
            assert_bounded(sub, f"{where}.{name}")


# --- math: real GSM8K and MAWPS rows ------------------------------------------------------------------------
GSM8K = jsonl("gsm8k_10.jsonl")


@pytest.mark.parametrize("row", GSM8K, ids=[str(r["idx"]) for r in GSM8K])
def test_gsm8k_gold_rationale_extracts_to_the_gold_number(row: dict[str, Any]) -> None:
    task = preset_task("gsm8k")
    gold = row["answer"].rsplit("####", 1)[1].strip().replace(",", "")
    ex = task.example_from_fields(row["question"], row["answer"], None)
    assert ex.answer == gold
    assert ex.target == " " + row["answer"].strip()
    predicted = task.extract(task.render_response(ex), ex)
    assert predicted == gold and task.is_correct(predicted, ex)
    assert task.reject_reason(ex) is None, "real GSM8K calculator notes must all verify"
    assert task.render_prompt(ex) == f"Question: {row['question']}\nAnswer:"


def test_gsm8k_fixture_covers_negative_and_thousands() -> None:
    task = preset_task("gsm8k")
    answers = {task.example_from_fields(r["question"], r["answer"], None).answer for r in GSM8K}
    assert {"-7", "1080"} <= answers


@pytest.mark.parametrize("output, expected", [
    ("So she has 72 clips.\n#### 72", "72"),
    ("The temperature fell to -7 degrees.\n#### -7", "-7"),  # the paper's code lost this sign
    ("#### 1,080", "1080"),
    ("He pays $5.50 for it.", "5.5"),
    ("She owes -$12.25 now", "-12.25"),
    ("48-24 = 24", "24"),  # a minus between numbers is subtraction, not a sign
    ("The answer is 43.", "43"),
    ("The answer is 43. Next she buys 5 more", "43"),
    ("It is .5 of the cake", "0.5"),
    ("x − 3 gives −3", "-3"),
    ("#### 12\n#### 13 apples and 2", "13"),
    ("no digits here", None),
    ("", None),
])
def test_math_extraction(output: str, expected: str | None) -> None:
    task = MathTask(TaskConfig(kind="math"))
    ex = Example(input="q", target=" #### 1", answer="1")
    assert task.extract(output, ex) == expected


def test_math_scoring_compares_numbers() -> None:
    task = MathTask(TaskConfig(kind="math"))
    ex = Example(input="q", target=" #### -7", answer="-7")
    assert task.is_correct("-7.0", ex)
    assert not task.is_correct("7", ex), "sign must count"
    assert not task.is_correct(None, ex)
    big = Example(input="q", target=" #### 1080", answer="1080")
    assert task.is_correct(task.extract("#### 1,080", big), big)
    assert task.is_correct("0.30000000000000004", Example(input="q", target="", answer="0.3"))


def test_mawps_number_only_targets() -> None:
    task = preset_task("mawps")
    rows = jsonl("mawps_10.jsonl")
    examples = [task.example_from_fields(r["input"], r["target"], None) for r in rows]
    assert examples[0].answer == "43" and examples[0].target == " The answer is 43."
    for row, ex in zip(rows, examples):
        assert Decimal(ex.answer) == Decimal(repr(row["target"]))
        assert task.is_correct(task.extract(ex.target, ex), ex)
        assert task.reject_reason(ex) is None


def test_math_target_without_final_number_is_refused() -> None:
    task = preset_task("gsm8k")
    with pytest.raises(ValueError, match="no final number"):
        task.example_from_fields("q", "She has 5 apples.", None)


def test_safe_eval_is_arithmetic_only() -> None:
    assert safe_eval("48/2") == 24
    assert safe_eval("(3+4)*2-1") == 13
    assert safe_eval("2**10") == 1024
    assert safe_eval("1,000*2") == 2000
    assert safe_eval("$12/60") == Decimal("0.2")
    for bad in ("__import__('os').system('true')", "x*2", "9**9**9", "1/0", "len('ab')", "[1]*3"):
        assert safe_eval(bad) is None, bad


def test_calculator_notes() -> None:
    assert wrong_calc_notes("48/2 = <<48/2=24>>24, 10/3 = <<10/3=3.33>>3.33") == []
    assert wrong_calc_notes("7*8 = <<7*8=54>>54") == ["<<7*8=54>>"]
    assert wrong_calc_notes("unknown <<x*2=4>>") == [], "notes that cannot be evaluated are not judged"


# property tests of the number extractor ----------------------------------------------------------------------
def _render(value: Decimal, commas: bool, dollar: bool) -> str:
    magnitude = abs(value)
    digits = format(magnitude, "f")
    whole, _, frac = digits.partition(".")
    if commas:
        whole = f"{int(whole):,}"
    text = whole + (f".{frac}" if frac else "")
    if dollar:
        text = "$" + text
    return ("-" if value < 0 else "") + text


numbers = st.one_of(
    st.integers(min_value=-10**12, max_value=10**12).map(Decimal),
    st.decimals(min_value=-10**9, max_value=10**9, places=3, allow_nan=False, allow_infinity=False),
)
templates = st.sampled_from([
    "#### {x}", "So the total is {x}.", "Step 1: 3 + 4 = 7\nStep 2: she pays {x}\n#### {x}",
    "The answer is {x}", "{x}", "In 2 days, (1 pear) she ends with {x} apples",
])


@settings(max_examples=300, deadline=None)
@given(value=numbers, commas=st.booleans(), dollar=st.booleans(), template=templates)
def test_extractor_recovers_any_formatted_number(value: Decimal, commas: bool, dollar: bool, template: str) -> None:
    text = template.replace("{x}", _render(value, commas, dollar))
    found = final_number(text)
    assert found is not None and found == value, text
    assert parse_number(canonical(found)) == value


@settings(max_examples=200, deadline=None)
@given(value=numbers)
def test_canonical_round_trips(value: Decimal) -> None:
    text = canonical(value)
    assert "e" not in text.lower() and not (text.endswith("0") and "." in text)
    assert parse_number(text) == value


# math teacher boundary -----------------------------------------------------------------------------------
def test_math_teacher_round_trip() -> None:
    task = preset_task("gsm8k")
    parent = task.example_from_fields(GSM8K[0]["question"], GSM8K[0]["answer"], None)
    messages = task.teacher_messages(parent, "Natalia sold 48 + 48 = 96 clips.\n#### 96", k=2)
    assert [m["role"] for m in messages][0] == "system" and messages[-1]["role"] == "user"
    request = messages[-1]["content"]
    assert GSM8K[0]["question"] in request and "#### 72" in request and "96" in request and "2 new problems" in request
    schema = task.teacher_schema(2)
    assert_bounded(schema)
    assert schema["properties"]["examples"]["minItems"] == schema["properties"]["examples"]["maxItems"] == 2
    reply = {"examples": [
        {"question": "Omar packed 36 boxes on Monday and a third as many on Tuesday. How many boxes in all?",
         "solution": "Tuesday: 36/3 = <<36/3=12>>12 boxes.\nTotal: 36+12 = <<36+12=48>>48 boxes.\n#### 48", "answer": 48},
        {"question": "Lena had 50 stickers and gave 15 to each of 4 friends. How many does she have now?",
         "solution": "She gave 15*4 = <<15*4=60>>60.\n50-60 = <<50-60=-10>>-10\n#### -10", "answer": -10},
    ]}
    jsonschema.validate(reply, schema)
    made = task.parse_teacher(reply, parent)
    assert [ex.answer for ex in made] == ["48", "-10"]
    assert made[0].target.startswith(" Tuesday") and made[0].target.endswith("#### 48")
    assert [task.reject_reason(roundtrip(ex)) for ex in made] == [None, None]
    # the declared answer disagrees with the solution / a calculator note is wrong / no number at all
    bad = {"examples": [
        {"question": "A farmer has 12 cows and buys 5 more. How many cows?", "solution": "12+5 = <<12+5=17>>17\n#### 17", "answer": 18},
        {"question": "A farmer has 12 cows and buys 6 more. How many cows?", "solution": "12+6 = <<12+6=19>>19\n#### 19", "answer": 19},
        {"question": "A farmer has some cows and buys more. How many cows?", "solution": "We cannot know.", "answer": 3},
    ]}
    reasons = [task.reject_reason(roundtrip(ex)) for ex in task.parse_teacher(bad, parent)]
    assert reasons == ["answer_mismatch", "calc_mismatch", "no_number"]


def test_math_teacher_solution_without_hashes_gets_the_gsm8k_layout() -> None:
    task = preset_task("gsm8k")
    parent = task.example_from_fields(GSM8K[1]["question"], GSM8K[1]["answer"], None)
    reply = {"examples": [{"question": "Ana earns $9 an hour and works 4 hours. What does she earn?",
                           "solution": "9*4 = <<9*4=36>>36, so she earns $36.", "answer": 36}]}
    (ex,) = task.parse_teacher(reply, parent)
    assert ex.target.endswith("\n#### 36") and task.reject_reason(roundtrip(ex)) is None


def test_math_teacher_for_number_only_data_keeps_number_only_targets() -> None:
    task = preset_task("mawps")
    row = jsonl("mawps_10.jsonl")[0]
    parent = task.example_from_fields(row["input"], row["target"], None)
    request = task.teacher_messages(parent, " The answer is 97.", k=1)[-1]["content"]
    assert row["input"] in request and "43" in request
    reply = {"examples": [{"question": "Ben had 90 marbles. He gave some to Ann and has 35 left. How many did he give?",
                           "solution": "90 - 35 = <<90-35=55>>55\n#### 55", "answer": 55.0}]}
    jsonschema.validate(reply, task.teacher_schema(1))
    (ex,) = task.parse_teacher(reply, parent)
    assert ex.target == " The answer is 55." and ex.answer == "55"
    assert task.reject_reason(roundtrip(ex)) is None
    lying = {"examples": [{"question": "Ben had 90 marbles and gave 30 away. How many are left?",
                           "solution": "90 - 30 = <<90-30=60>>60\n#### 60", "answer": 65}]}
    assert task.reject_reason(roundtrip(task.parse_teacher(lying, parent)[0])) == "answer_mismatch"


# --- classification: real sentiment rows, TREC and SNIPS in their original layouts --------------------------
def test_sentiment_rows_prompt_response_and_options() -> None:
    task = preset_task("rotten_tomatoes")
    for row in jsonl("rotten_tomatoes_20.jsonl"):
        ex = task.example_from_fields(row["text"], row["label"], None)
        assert task.render_prompt(ex) == f"Review: {row['text']}\nSentiment:"
        assert task.render_response(ex) == " " + row["label"]
        options = task.label_options(ex)
        assert options == [" negative", " positive"]
        assert task.is_correct(task.extract(task.render_response(ex), ex), ex)
        assert task.reject_reason(ex) is None


@pytest.mark.parametrize("output, expected", [
    (" positive", "positive"), ("Positive!", "positive"), ("  NEGATIVE\nReview:", "negative"),
    ('"negative"', "negative"), (" negatively so", None), (" pos", None), ("", None), (" it is positive", None),
])
def test_classification_extraction(output: str, expected: str | None) -> None:
    task = preset_task("sst2")
    assert task.extract(output, Example(input="x", target=" positive", answer="positive")) == expected


def test_classification_config_errors() -> None:
    with pytest.raises(ConfigError, match="task.labels: required"):
        make_task(TaskConfig(kind="classification"))
    with pytest.raises(ConfigError, match="differ only in case"):
        make_task(TaskConfig(kind="classification", labels=["Yes", "yes"]))


def test_classification_teacher_round_trip() -> None:
    task = preset_task("rotten_tomatoes")
    row = jsonl("rotten_tomatoes_20.jsonl")[0]
    parent = task.example_from_fields(row["text"], row["label"], None)
    messages = task.teacher_messages(parent, " negative", k=2)
    request = messages[-1]["content"]
    assert row["text"] in request and "Correct label: positive" in request and "negative" in request
    assert "what_made_it_hard" in request and "same way" in request
    schema = task.teacher_schema(2)
    assert_bounded(schema)
    assert list(schema["properties"]) == ["what_made_it_hard", "examples"], "the diagnosis is written first"
    reply = {"what_made_it_hard": "The praise hides behind a list of the film's risks.",
             "examples": [{"text": "It sounds like a disaster on paper, yet the film lands every risky turn.", "label": "positive"},
                          {"text": "For all its gloomy setup, this is a warm and funny film.", "label": "positive"}]}
    jsonschema.validate(reply, schema)
    made = task.parse_teacher(reply, parent)
    assert [ex.answer for ex in made] == ["positive", "positive"]
    assert made[0].target == " positive" and made[0].meta["what_made_it_hard"].startswith("The praise")
    assert all(task.reject_reason(roundtrip(ex)) is None for ex in made)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**reply, "examples": [reply["examples"][0] | {"label": "neutral"}] * 2}, schema)
    # a backend without the grammar could still send one; the filter names it
    (odd,) = task.parse_teacher({"examples": [{"text": "Meh.", "label": "neutral"}]}, parent)
    assert task.reject_reason(odd) == "label_not_in_set"


# Questions in the original 'COARSE:fine question' layout of TREC's train_5500.label (Li & Roth 2002), written from
# that file's well-known first lines; the 'sister city' line below is made up to carry the file's stray 0xF0 byte.
TREC_LINES = [
    "DESC:manner How did serfdom develop in and then leave Russia ?",
    "ENTY:cremat What films featured the character Popeye Doyle ?",
    "ABBR:exp What is the full form of .com ?",
    "HUM:ind Who killed Gandhi ?",
    "LOC:other What sprawling U.S. state boasts the most airports ?",
    "NUM:date When was Ozzy Osbourne born ?",
]


def test_trec_original_label_file(tmp_path: Path) -> None:
    path = tmp_path / "train_5500.label"
    # the original file is not UTF-8: one stray 0xF0 byte, as in 'sister\xf0city'
    path.write_bytes(("\n".join(TREC_LINES) + "\n").encode() + b"HUM:desc What is the sister\xf0city of Hamburg ?\n")
    cfg = resolve({"task": {"preset": "trec"}, "data": {"seed": str(path), "validation": str(path), "test": str(path)}})
    task = make_task(cfg.task)
    seed = load_splits(cfg, task).seed
    assert [ex.answer for ex in seed] == ["description", "entity", "abbreviation", "human", "location", "number", "human"]
    assert seed[0].input == "How did serfdom develop in and then leave Russia ?"
    assert seed[-1].input == "What is the sister city of Hamburg ?"
    assert task.render_prompt(seed[3]) == "Question: Who killed Gandhi ?\nType:"
    assert task.label_options(seed[0]) == [" abbreviation", " description", " entity", " human", " location", " number"]


def test_trec_hugging_face_integer_labels(tmp_path: Path) -> None:
    path = tmp_path / "trec.jsonl"
    rows = [{"text": "Who killed Gandhi ?", "coarse_label": 3, "fine_label": 29},
            {"text": "What is the full form of .com ?", "coarse_label": 0, "fine_label": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    cfg = resolve({"task": {"preset": "trec"}, "data": {"seed": str(path), "validation": str(path), "test": str(path)}})
    assert [ex.answer for ex in load_splits(cfg, make_task(cfg.task)).seed] == ["human", "abbreviation"]


def test_snips_benchmark_json_layout(tmp_path: Path) -> None:
    # the layout of the SNIPS NLU benchmark's train_<Intent>_full.json files; the utterances are made up
    layout = {
        "GetWeather": [{"data": [{"text": "will it rain "}, {"text": "tomorrow", "entity": "timeRange"},
                                 {"text": " in "}, {"text": "Lyon", "entity": "city"}]}],
        "PlayMusic": [{"data": [{"text": "play something by "}, {"text": "Nina Simone", "entity": "artist"}]},
                      {"data": [{"text": "put on some "}, {"text": "jazz", "entity": "genre"}]}],
    }
    path = tmp_path / "train_snips_full.json"
    path.write_text(json.dumps(layout), encoding="utf-8")
    cfg = resolve({"task": {"preset": "snips"}, "data": {"seed": str(path), "validation": str(path), "test": str(path)}})
    task = make_task(cfg.task)
    seed = load_splits(cfg, task).seed
    assert [(ex.input, ex.answer) for ex in seed] == [("will it rain tomorrow in Lyon", "GetWeather"),
                                                      ("play something by Nina Simone", "PlayMusic"),
                                                      ("put on some jazz", "PlayMusic")]
    assert task.render_prompt(seed[0]) == "Utterance: will it rain tomorrow in Lyon\nIntent:"
    assert len(task.label_options(seed[0])) == 7


# --- multiple choice: CaseHOLD layout ------------------------------------------------------------------------
# the layout of CaseHOLD's casehold.csv (unnamed index column, citing_prompt, holding_0..4, label); rows made up
CASEHOLD_HEADER = ",citing_prompt,holding_0,holding_1,holding_2,holding_3,holding_4,label"
CASEHOLD_ROWS = [
    '0,"The court relied on Smith v. Jones, 123 F.3d 456 (9th Cir. 1999) (<HOLDING>), to dismiss the claim.",'
    'holding that a contract requires consideration,holding that the statute of limitations had run,'
    'holding that federal courts lack jurisdiction over state tax claims,holding that a warrant was required,'
    '"holding that the plaintiff lacked standing, because no injury was shown",1',
    '1,"See Doe v. Roe, 55 F.4th 10 (1st Cir. 2022) (<HOLDING>).",holding that notice was adequate,'
    'holding that the search was unlawful,holding that damages were speculative,holding that the appeal was moot,'
    'holding that the arbitration clause was enforceable,4',
]


def casehold_task_and_seed(tmp_path: Path) -> tuple[Task, list[Example]]:
    path = tmp_path / "casehold.csv"
    path.write_text("\n".join([CASEHOLD_HEADER, *CASEHOLD_ROWS]) + "\n", encoding="utf-8")
    cfg = resolve({"task": {"preset": "casehold"}, "data": {"seed": str(path), "validation": str(path), "test": str(path)}})
    task = make_task(cfg.task)
    return task, load_splits(cfg, task).seed


def test_casehold_csv_prompt_and_scoring(tmp_path: Path) -> None:
    task, seed = casehold_task_and_seed(tmp_path)
    ex = seed[0]
    assert isinstance(task, MultipleChoiceTask)
    assert ex.answer == "B" and len(ex.choices or ()) == 5
    assert ex.choices[4] == "holding that the plaintiff lacked standing, because no injury was shown"  # type: ignore[index]
    prompt = task.render_prompt(ex)
    assert prompt.startswith("The court relied on") and "\nA. holding that a contract requires consideration\n" in prompt
    assert prompt.endswith("\nE. holding that the plaintiff lacked standing, because no injury was shown\nAnswer:")
    assert task.render_response(ex) == " B" and task.label_options(ex) == [" A", " B", " C", " D", " E"]
    assert seed[1].answer == "E"
    for output, expected in [(" B", "B"), ("(b) holding", "B"), ("Answer: E", "E"), (" All of them", None), (" F", None)]:
        assert task.extract(output, ex) == expected, output
    assert task.is_correct("B", ex) and not task.is_correct("A", ex)


def test_casehold_teacher_round_trip(tmp_path: Path) -> None:
    task, seed = casehold_task_and_seed(tmp_path)
    request = task.teacher_messages(seed[0], " D", k=1)[-1]["content"]
    assert "Smith v. Jones" in request and "Correct option: B" in request and "D" in request
    schema = task.teacher_schema(1)
    assert_bounded(schema)
    options = ["holding that a lease is a contract", "holding that the lease was void", "holding that rent was due",
               "holding that eviction was proper", "holding that the tenant waived notice"]
    reply = {"what_made_it_hard": "Two holdings mention contracts.",
             "examples": [{"context": "In Park v. Lee, 9 F.4th 1 (2d Cir. 2021) (<HOLDING>), the court ...",
                           "options": options, "answer": "C"}]}
    jsonschema.validate(reply, schema)
    (ex,) = task.parse_teacher(reply, seed[0])
    assert ex.answer == "C" and ex.choices == tuple(options) and task.reject_reason(roundtrip(ex)) is None
    dup = Example(input="ctx", target=" A", answer="A", choices=("x", "x", "y", "z", "w"))
    short = Example(input="ctx", target=" A", answer="A", choices=("x", "y"))
    assert task.reject_reason(dup) == "duplicate_options" and task.reject_reason(short) == "wrong_option_count"


def test_multiple_choice_rows_need_the_configured_number_of_options() -> None:
    task = MultipleChoiceTask(TaskConfig(kind="multiple_choice"))
    with pytest.raises(ValueError, match="4 options"):
        task.example_from_fields("ctx", 1, ["a", "b", "c", "d"])
    with pytest.raises(ValueError, match="not an option"):
        task.example_from_fields("ctx", 7, ["a", "b", "c", "d", "e"])
    assert task.example_from_fields("ctx", "c", ["a", "b", "c", "d", "e"]).answer == "C"


# --- free text ----------------------------------------------------------------------------------------------
def test_free_text_exact_normalised() -> None:
    task = make_task(TaskConfig(kind="free_text"))
    ex = task.example_from_fields("Capital of France?", "Paris", None)
    assert task.render_prompt(ex) == "Input: Capital of France?\nOutput:" and task.render_response(ex) == " Paris"
    for output, ok in [(" paris.", True), ("  PARIS  \nnext line", True), ("Paris, France", False), ("", False)]:
        assert task.is_correct(task.extract(output, ex), ex) is ok, output


def test_free_text_regex() -> None:
    with pytest.raises(ConfigError, match="answer_regex"):
        make_task(TaskConfig(kind="free_text", match="regex"))
    with pytest.raises(ConfigError, match="not a valid regex"):
        make_task(TaskConfig(kind="free_text", match="regex", answer_regex="(unclosed"))
    task = make_task(TaskConfig(kind="free_text", match="regex", answer_regex=r"(?i)(the )?{answer}( city)?\.?"))
    ex = task.example_from_fields("Capital of France?", "Paris (FR)", None)
    assert ex.answer == r"(?i)(the )?Paris\ \(FR\)( city)?\.?"
    assert task.is_correct(task.extract(" the paris (fr) city.", ex), ex)
    assert not task.is_correct(task.extract(" Lyon", ex), ex)
    fixed = make_task(TaskConfig(kind="free_text", match="regex", answer_regex=r"\d{4}-\d{2}-\d{2}"))
    (made,) = fixed.parse_teacher({"examples": [{"input": "When?", "output": "tomorrow"}]}, ex)
    assert fixed.reject_reason(made) == "answer_mismatch"


def test_free_text_teacher_round_trip() -> None:
    task = make_task(TaskConfig(kind="free_text", description="Name the capital city."))
    parent = task.example_from_fields("Capital of Peru?", "Lima", None)
    request = task.teacher_messages(parent, "Cusco", k=1)[-1]["content"]
    assert "Name the capital city." in request and "Capital of Peru?" in request and "Cusco" in request
    schema = task.teacher_schema(1)
    assert_bounded(schema)
    reply = {"examples": [{"input": "Capital of Chile?", "output": "Santiago\nextra"}]}
    jsonschema.validate(reply, schema)
    (ex,) = task.parse_teacher(reply, parent)
    assert ex.target == " Santiago" and task.reject_reason(ex) is None


# --- across kinds ---------------------------------------------------------------------------------------------
def test_task_kind_is_required() -> None:
    with pytest.raises(ConfigError, match=r"task.kind: required \(one of math, classification, multiple_choice, free_text\)"):
        make_task(RunConfig().task)


@pytest.mark.parametrize("preset", ["gsm8k", "mawps", "sst2", "rotten_tomatoes", "trec", "snips", "casehold"])
def test_every_preset_builds_a_task_with_a_bounded_schema(preset: str) -> None:
    task = preset_task(preset)
    for k in (1, 3):
        schema = task.teacher_schema(k)
        assert_bounded(schema)
        jsonschema.Draft202012Validator.check_schema(schema)
        assert max_reply_chars(schema) < 20_000


def test_teacher_messages_share_their_static_prefix() -> None:
    """The batched teacher evaluates the common prompt prefix once: the instructions must come before the miss."""
    task = preset_task("rotten_tomatoes")
    a, b = (task.example_from_fields(r["text"], r["label"], None) for r in jsonl("rotten_tomatoes_20.jsonl")[:2])
    ma, mb = task.teacher_messages(a, " negative", 1), task.teacher_messages(b, " positive", 1)
    assert ma[0] == mb[0]
    first_a, first_b = ma[-1]["content"].split("\n\n")[0], mb[-1]["content"].split("\n\n")[0]
    assert first_a == first_b and len(first_a) > 200


def test_classification_and_math_types() -> None:
    assert isinstance(preset_task("sst2"), ClassificationTask)
    assert isinstance(preset_task("gsm8k"), MathTask)
    assert isinstance(make_task(TaskConfig(kind="free_text")), FreeTextTask)


# --- the presets with room: MATH subject classification and MMLU-STEM (real rows) -------------------------------
def test_math_topic_preset_loads_real_rows_with_latex_intact(tmp_path: Path) -> None:
    cfg = resolve({"task": {"preset": "math_topic"},
                   "data": {"pool": str(FIXTURES / "math_topic_42.jsonl"), "seed_size": 14, "validation_size": 14,
                            "test_size": 14}})
    task = make_task(cfg.task)
    splits = load_splits(cfg, task)
    assert len(task.labels) == 7 and {ex.answer for ex in splits.seed} == set(task.labels)  # 2 a label
    rows = {r["problem"] for r in jsonl("math_topic_42.jsonl")}
    for ex in splits.seed + splits.validation + splits.test:
        assert ex.input in rows, "the problem text is kept byte for byte"
        assert task.render_prompt(ex).startswith("Problem: ") and task.render_prompt(ex).endswith("\nSubject:")
    assert any("\\frac" in ex.input for ex in splits.seed + splits.validation + splits.test)
    assert " Counting & Probability" in task.label_options(splits.seed[0])


def test_mmlu_stem_preset_answers_with_the_option_text() -> None:
    cfg = resolve({"task": {"preset": "mmlu_stem"}})
    task = make_task(cfg.task)
    row = jsonl("mmlu_stem_12.jsonl")[0]
    ex = task.example_from_fields(row["question"], row["answer"], row["choices"])
    letter = "ABCD"[row["answer"]]
    assert ex.answer == letter and ex.target == " " + row["choices"][row["answer"]]
    assert task.render_response(ex) == ex.target
    assert task.label_options(ex) == [" " + c for c in row["choices"]]
    prompt = task.render_prompt(ex)
    assert prompt.startswith("Question: ") and "\nA. " + row["choices"][0] in prompt and prompt.endswith("Answer:")
    for i, choice in enumerate(row["choices"]):
        assert task.extract(" " + choice, ex) == "ABCD"[i]
    assert task.is_correct(task.extract(ex.target, ex), ex)
    assert task.extract(" something else entirely", ex) is None
    reply = {"what_made_it_hard": "x", "examples": [{"context": "Which organelle makes ATP?",
                                                    "options": ["ribosome", "mitochondrion", "nucleus", "vacuole"],
                                                    "answer": "B"}]}
    jsonschema.validate(reply, task.teacher_schema(1))
    (made,) = task.parse_teacher(reply, ex)
    assert made.target == " mitochondrion" and made.answer == "B" and task.reject_reason(roundtrip(made)) is None
