"""Bad data, bad config and teacher garbage: each refused with a clear message or a counted reason, never a crash.
Property tests feed every loader and answer extractor arbitrary input."""

from __future__ import annotations

import csv
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.schema import resolve
from engine.data.example_rows import example_row
from engine.data.load import load_splits
from engine.data.readers import load_rows
from engine.filter.checks import LanguageCheck, PromptEcho, guess_language, writing_scripts
from engine.filter.filtering import CandidateFilter
from engine.store.rows import StoredExample
from engine.tasks.base import Example
from engine.tasks.math import canonical, final_number, numbers_in, parse_number
from engine.tasks.registry import make_task
from engine.tasks.teacher_prompt import SYSTEM
from models.errors import DataError
from models.teacher.base import check_reply, closed_schema, failure_reason

FIXTURES = Path(__file__).parent / "fixtures"
RT20 = FIXTURES / "rotten_tomatoes_20.jsonl"
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# --- empty files, repeated ids, overlapping splits ------------------------------------------------------------------
@pytest.mark.parametrize("name, content", [
    ("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n"), ("empty.csv", ""), ("header_only.csv", "text,label\n"),
    ("empty.json", "[]"), ("empty.label", ""), ("bom_only.jsonl", "\ufeff"),
])
def test_empty_files_are_refused_by_name(tmp_path: Path, name: str, content: str) -> None:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=r": no rows$") as err:
        load_rows(path)
    assert str(err.value).startswith(str(path))


def test_a_repeated_id_is_refused_with_both_lines(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    rows = [{"id": 1, "text": "a", "label": "positive"}, {"id": 2, "text": "b", "label": "negative"},
            {"id": 1, "text": "c", "label": "negative"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_rows(path)
    assert str(err.value) == f"{path}:line 3: id 1 repeats the id of line 1; each row's id must be unique"


def test_a_repeated_idx_in_csv_names_the_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerows([["idx", "text", "label"], ["0", "one\ntwo", "positive"], ["1", "b", "negative"],
                          ["0", "c", "negative"]])
    with pytest.raises(DataError, match=r"rows.csv:line 5: idx '0' repeats the idx of line 2"):
        load_rows(path)


def test_rows_without_ids_and_distinct_ids_pass(tmp_path: Path) -> None:
    assert len(load_rows(RT20)) == 20
    assert len(load_rows(FIXTURES / "gsm8k_10.jsonl")) == 10  # idx 0..9


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_seed_rows_also_in_validation_or_test_are_kept_out_of_the_seed_with_a_warning(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in RT20.read_text(encoding="utf-8").splitlines()]
    seed = _write(tmp_path / "seed.jsonl", rows[:10])
    validation = _write(tmp_path / "validation.jsonl", rows[8:14])  # rows 8 and 9 are seed rows too
    test = _write(tmp_path / "test.jsonl", [rows[0], *rows[14:]])  # and row 0
    cfg = resolve({"task": {"preset": "rotten_tomatoes"},
                   "data": {"seed": str(seed), "validation": str(validation), "test": str(test)}})
    splits = load_splits(cfg, make_task(cfg.task))
    assert [ex.input for ex in splits.seed] == [r["text"] for r in rows[1:8]]
    assert splits.notes["warnings"] == [f"{seed}: 3 rows also in the validation and test sets were kept out of the seed"]
    assert splits.notes["indices"]["seed"] == list(range(1, 8))
    assert splits.notes["input_overlap"]["seed~validation"] == splits.notes["input_overlap"]["seed~test"] == 0


def test_seed_drawn_from_a_pool_skips_rows_of_the_given_test_file(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in RT20.read_text(encoding="utf-8").splitlines()]
    test = _write(tmp_path / "test.jsonl", rows[:5])
    cfg = resolve({"task": {"preset": "rotten_tomatoes"},
                   "data": {"pool": str(RT20), "test": str(test), "validation_size": 4, "seed_size": 8}})
    splits = load_splits(cfg, make_task(cfg.task))
    assert not {ex.input for ex in splits.seed} & {r["text"] for r in rows[:5]}
    assert len(splits.seed) == 8 and splits.notes["pool_rows_dropped_as_eval_duplicates"] == 5
    assert "5 rows also in the test set were kept out of the seed" in splits.notes["warnings"][0]


def test_a_seed_file_entirely_inside_the_test_file_is_refused(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in RT20.read_text(encoding="utf-8").splitlines()]
    seed = _write(tmp_path / "seed.jsonl", rows[:3])
    cfg = resolve({"task": {"preset": "rotten_tomatoes"},
                   "data": {"seed": str(seed), "validation": str(RT20), "test": str(RT20)}})
    with pytest.raises(DataError, match="every seed row is also in the validation and test set"):
        load_splits(cfg, make_task(cfg.task))


# --- property tests: every loader, every answer extractor ----------------------------------------------------------
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
_KEYS = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd")), min_size=1, max_size=8).filter(
    lambda k: k not in ("id", "idx"))


@PROPERTY
@given(rows=st.lists(st.dictionaries(_KEYS, st.one_of(_TEXT, st.integers(), st.none(), st.booleans()),
                                     min_size=1, max_size=4), min_size=1, max_size=6))
def test_jsonl_and_json_round_trip_any_rows(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    assert list(load_rows(tmp_path / "rows.jsonl")) == rows
    (tmp_path / "rows.json").write_text(json.dumps(rows), encoding="utf-8")
    assert list(load_rows(tmp_path / "rows.json")) == rows


@PROPERTY
@given(header=st.lists(_KEYS, min_size=1, max_size=4, unique=True),
       values=st.lists(st.lists(_TEXT.filter(lambda t: "\x00" not in t), min_size=4, max_size=4), min_size=1, max_size=6))
def test_csv_round_trips_any_text(tmp_path: Path, header: list[str], values: list[list[str]]) -> None:
    rows = [dict(zip(header, v[: len(header)], strict=True)) for v in values]
    path = tmp_path / "rows.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows([[r[h] for h in header] for r in rows])
    assert list(load_rows(path)) == rows


@PROPERTY
@given(data=st.one_of(st.binary(max_size=300), _TEXT.map(lambda t: t.encode("utf-8")),
                      st.lists(st.dictionaries(_KEYS, st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])),
                                                              max_size=8)), min_size=1, max_size=3).map(
                          lambda rows: "\n".join(json.dumps(r) for r in rows).encode())),
       suffix=st.sampled_from([".jsonl", ".json", ".csv", ".label"]))
def test_any_bytes_give_rows_or_one_data_error(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_bytes(data)
    try:
        rows = load_rows(path)
    except DataError as err:
        assert str(err).startswith(str(path)) and "\n" not in str(err)
    else:
        assert rows and all(isinstance(r, dict) for r in rows)


@pytest.mark.parametrize("suffix, content", [
    (".json", "[" * 100_000), (".jsonl", "[" * 100_000), (".json", '{"A": [{"data": [1, 2]}]}'),
    (".csv", "text\n" + "x" * 200_000 + "\n"),
    (".jsonl", '{"text": "half a pair \\ud83d", "label": "positive"}\n'),
    (".json", '[{"text": "ok", "label": {"x": ["\\udcfe"]}}]'),
])
def test_pathological_files_give_one_data_error(tmp_path: Path, suffix: str, content: str) -> None:
    path = tmp_path / f"rows{suffix}"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError):
        load_rows(path)


@PROPERTY
@given(text=_TEXT)
def test_math_extractors_never_raise(text: str) -> None:
    found = final_number(text)
    assert found is None or found in numbers_in(text)
    parsed = parse_number(text)
    assert parsed is None or parsed.is_finite()


@PROPERTY
@given(value=st.decimals(allow_nan=False, allow_infinity=False, places=3, min_value=-10**9, max_value=10**9),
       before=_TEXT.filter(lambda t: "####" not in t), after=st.sampled_from(["", ".", " dollars", "\n"]))
def test_math_final_number_after_the_marker(value: Decimal, before: str, after: str) -> None:
    text = f"{before}\n#### {canonical(value)}{after}"
    assert final_number(text) == Decimal(canonical(value))
    assert parse_number(canonical(value)) == Decimal(canonical(value))


@PROPERTY
@given(value=st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT, st.lists(st.integers(), max_size=2)))
def test_parse_number_takes_any_json_value(value: Any) -> None:
    parsed = parse_number(value)
    assert parsed is None or parsed.is_finite()


@PROPERTY
@given(text=_TEXT, tail=_TEXT)
def test_classification_extract_gives_a_label_or_none(text: str, tail: str) -> None:
    task = make_task(resolve({"task": {"preset": "rotten_tomatoes"}}).task)
    ex = Example(input="x", target=" positive", answer="positive")
    assert task.extract(text, ex) in (None, "negative", "positive")
    if not tail[:1].isalnum() and tail[:1] != "_":
        assert task.extract(" Positive" + tail, ex) == "positive"


@PROPERTY
@given(text=_TEXT, choice_format=st.sampled_from(["letter", "text"]))
def test_multiple_choice_extract_gives_an_option_or_none(text: str, choice_format: str) -> None:
    task = make_task(resolve({"task": {"preset": "mmlu_stem", "choice_format": choice_format}}).task)
    ex = Example(input="q", target=" A", answer="A", choices=("alpha", "beta", "gamma", "delta"))
    got = task.extract(text, ex)
    assert got is None or got in task.letters
    assert task.is_correct(got, ex) == (got == "A")


# --- teacher garbage ------------------------------------------------------------------------------------------------
def test_extra_keys_are_refused_with_a_counted_reason() -> None:
    task = make_task(resolve({"task": {"preset": "rotten_tomatoes"}}).task)
    schema = task.teacher_schema(1)
    good = {"what_made_it_hard": "irony", "examples": [{"text": "Clever and warm.", "label": "positive"}]}
    assert check_reply(json.dumps(good), schema) == (good, None)
    for extra in ({**good, "notes": "x"}, {**good, "examples": [{**good["examples"][0], "confidence": 0.9}]}):
        parsed, error = check_reply(json.dumps(extra), schema)
        assert parsed is None and error.startswith("extra keys") and failure_reason(error) == "extra_keys"
    # a schema that does not close its objects is closed here: a server backend may add keys
    loose = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
    assert closed_schema(loose)["additionalProperties"] is False
    assert failure_reason(check_reply('{"label": "a", "why": "b"}', loose)[1]) == "extra_keys"


@pytest.mark.parametrize("text, reason", [
    ("", "empty_reply"), ("   ", "empty_reply"), ("{not json", "invalid_json"), ("[1, 2]", "schema"),
    ('{"what_made_it_hard": "x", "examples": [{"text": "Great \\udcfe film", "label": "positive"}]}', "invalid_unicode"),
    ('{"what_made_it_hard": "x", "examples": [{"text": "Fine film.", "label": "neutral"}]}', "schema"),
    ("[" * 50_000, "invalid_json"),
])
def test_unusable_replies_each_have_a_reason(text: str, reason: str) -> None:
    task = make_task(resolve({"task": {"preset": "rotten_tomatoes"}}).task)
    parsed, error = check_reply(text, task.teacher_schema(1))
    assert parsed is None and failure_reason(error) == reason


def test_language_guess_is_conservative() -> None:
    assert guess_language("The film is a mess, and the actors seem to know it.") == "en"
    assert guess_language("Esta película es una obra maestra, pero el final no tiene sentido para nadie.") == "es"
    assert guess_language("O filme é muito bom, mas o final não tem nenhum sentido para quem assiste.") == "pt"
    assert guess_language("Ce film est une catastrophe, mais les acteurs sont très bons dans leur rôle.") == "fr"
    assert guess_language("Der Film ist nicht gut, aber die Musik ist sehr schön und die Bilder auch.") == "de"
    assert guess_language("Фильм очень скучный и слишком длинный.") == "cyrillic"
    assert guess_language("この映画はとても面白かった。") == "japanese"
    # real rows that once read as Portuguese or Spanish: "a" twice (gsm8k_10.jsonl, line 5), and maths variables (MATH
    # train rows, ../shared/data/math_topic: the variable a, and y inside an align environment)
    james = json.loads((FIXTURES / "gsm8k_10.jsonl").read_text(encoding="utf-8").splitlines()[4])["question"]
    assert james.startswith("James writes a 3-page letter") and guess_language(james) is None  # unsure now: it passes
    assert guess_language(r"Evaluate the product \[ (a-10) \cdot (a-9) \cdot \dotsm \cdot (a-1) \cdot a, \] where $a=2$.") is None
    assert guess_language("If \\begin{align*}\n2x-y&=3,\\\\\nx+y &=1,\n\\end{align*}compute $8x-7y$.") is None
    for unsure in ("Brilliant.", "x^2 + 3x = 10", "$\\frac{1}{2}$ of 48", "OK ok", ":O?|,sgTitTiAa g+aing|;,Ost"):
        assert guess_language(unsure) is None, unsure


REAL_TEXTS = {"gsm8k_10.jsonl": "question", "mawps_10.jsonl": "input", "rotten_tomatoes_20.jsonl": "text",
              "math_topic_42.jsonl": "problem", "mmlu_stem_12.jsonl": "question"}


@pytest.mark.parametrize("name", sorted(REAL_TEXTS))
def test_a_few_letters_of_a_script_no_seed_uses_are_rejected_and_real_rows_pass(name: str) -> None:
    texts = [str(r[REAL_TEXTS[name]]) for r in map(json.loads, (FIXTURES / name).read_text(encoding="utf-8").splitlines())]
    half = len(texts) // 2
    check = LanguageCheck(texts[:half])
    assert check.scripts == frozenset()
    for text in texts[half:]:  # real rows of the same data set are never stray, whatever the language guess says
        assert writing_scripts(text) <= check.scripts, text
    # the kept slip of sweep 8 (two Chinese characters in an English review), and the like in a maths text
    slip = texts[half] + " no演技 to show."
    assert writing_scripts(slip) == {"chinese"} and not check.allows(slip, None)
    assert not check.allows(texts[half] + " Ответ:", texts[0])
    # a parent that uses the script lends it; Greek letters are maths symbols, never stray
    assert check.allows(slip, "Tokyo (東京) in winter.")
    assert writing_scripts(texts[half] + " Let θ = π/4, Ω = 2.") == frozenset()


def _screen(rows: list[StoredExample], candidates: list[StoredExample], **checks: Any) -> list[str | None]:
    cfg = resolve({"task": {"preset": "rotten_tomatoes"}, "checks": checks})
    task = make_task(cfg.task)
    screen = CandidateFilter(task, cfg.checks, cfg.loop.near_duplicate, rows, rows)
    flags: Counter[str] = Counter()
    return [screen.screen(c, flags) for c in candidates]


def _seed_rows() -> list[StoredExample]:
    out = []
    for i, line in enumerate(RT20.read_text(encoding="utf-8").splitlines()[:12]):
        row = json.loads(line)
        ex = Example(input=row["text"], target=" " + row["label"], answer=row["label"])
        out.append(StoredExample.from_row({**example_row(1, "seed", ex), "id": i + 1, "reason": None}))
    return out


def _candidate(text: str, label: str, parent: int, i: int) -> StoredExample:
    ex = Example(input=text, target=" " + label, answer=label, meta={"requested_label": label})
    row = example_row(1, "synthetic", ex, status="pending", origin_round=0, parent_id=parent)
    return StoredExample.from_row({**row, "id": 100 + i, "reason": None})


def test_every_garbage_candidate_gets_its_own_counted_reason() -> None:
    seeds = _seed_rows()
    english = next(r for r in seeds if r.answer == "positive" and guess_language(r.input) == "en")
    portuguese = next(r for r in seeds if guess_language(r.input) == "pt")
    candidates = [
        _candidate("     ", "positive", english.id, 0),
        _candidate(english.input, "positive", english.id, 1),
        _candidate("Esta película es una obra maestra, pero el final no tiene ningún sentido para el público.",
                   "positive", english.id, 2),
        _candidate("Um roteiro fraco e sem graça, que não consegue aproveitar o elenco nem os poucos bons momentos.",
                   "negative", portuguese.id, 3),
        _candidate("Sharp and funny: " + SYSTEM.split(". ")[2] + ".", "positive", english.id, 4),
        _candidate("A tender, funny portrait of two brothers who never stop arguing about the family farm.",
                   "neutral", english.id, 5),
        _candidate("A tender, funny portrait of two brothers who never stop arguing about the family farm.",
                   "positive", english.id, 6),
    ]
    reasons = _screen(seeds, candidates)
    assert reasons == ["empty_input", "copy_of_seed", "wrong_language", None, "prompt_echo", "label_not_in_set", None]
    off = _screen(seeds, candidates, language=False, prompt_echo=False)
    assert off[2] is None and off[4] is None, "each check is a switch"


def test_prompt_echo_covers_the_instructions_not_the_example() -> None:
    task = make_task(resolve({"task": {"preset": "gsm8k"}}).task)
    sample = Example(input="Ann has 3 apples and buys 4 more. How many apples does she have now?",
                     target=" 3 + 4 = 7\n#### 7", answer="7")
    echo = PromptEcho(task, sample)
    assert echo.match("Do not solve the problem below again and do not copy it. A train leaves at 3.")
    assert echo.match("A baker fills 4 trays with 15 muffins each. She sells 23 muffins. How many are left?"), \
        "the worked example of the prompt counts as prompt text"
    assert not echo.match("Ann has 3 apples and buys 4 more. How many apples does she have now?")
    assert not echo.match("Tim reads 12 pages a day for 5 days. How many pages does he read?")


def test_prompt_echo_catches_the_prompts_short_head_lines() -> None:
    # Kept by the llm2llm arm of MATH sweep 11 (run 67, round 0): a real problem with the prompt's tail written after it.
    task = make_task(resolve({"task": {"preset": "math_topic"}}).task)
    echo = PromptEcho(task, Example(input="Fully factor the following expression: $2x^2-8$", target="Algebra",
                                    answer="Algebra"))
    problem = "Express your answer as an ordered pair $(x,y)$ of decimals."
    assert echo.match(problem + "\n\nCorrect label: Algebra\n\nThe student answered: Algebra")
    assert echo.match(problem + "\nThe student answered: Geometry"), "another label's words change no head"
    assert not echo.match(problem) and not echo.match("Label the points: $A$, $B$ and $C$. Find $AB$.")


class GarbageTeacher:
    """A teacher backend (as a server might be) whose replies are garbage of every kind; replies go through
    check_reply like every real backend's."""

    def __init__(self, seeds: list[str]) -> None:
        self.seeds = seeds
        self.calls = 0

    def identity(self) -> str:
        return "garbage-teacher"

    def info(self) -> dict[str, Any]:
        return {"backend": "garbage", "model": "garbage"}

    def close(self) -> None:
        pass

    def _write(self, n: int) -> str:
        echo = "Sharp and funny: " + SYSTEM.split(". ")[2] + "."
        spanish = "Esta película es una obra maestra, pero el final no tiene ningún sentido para el público."
        items = [
            {"what_made_it_hard": "x", "examples": [{"text": " " * 8, "label": "positive"},
                                                   {"text": self.seeds[0], "label": "positive"}]},
            {"what_made_it_hard": "x", "examples": [{"text": spanish, "label": "positive"},
                                                   {"text": echo, "label": "negative"}]},
            {"what_made_it_hard": "x", "examples": [{"text": "Fine film, fine cast.", "label": "positive"}] * 2,
             "confidence": 0.9},  # extra key
            {"what_made_it_hard": "x", "examples": [{"text": "A film.", "label": "neutral"}] * 2},  # label not in set
            "{\"what_made_it_hard\": \"unfinished",  # cut JSON
            "",  # nothing at all
        ]
        item = items[n % len(items)]
        return item if isinstance(item, str) else json.dumps(item)

    def generate(self, requests: list[Any], on_reply: Any = None) -> list[Any]:
        from models.teacher.base import TeacherReply

        replies = []
        for req in requests:
            if "examples" in req.schema.get("properties", {}):
                text = self._write(self.calls)
            else:  # blind verification: agree with whatever label was asked about
                text = json.dumps({"label": "positive"})
            self.calls += 1
            parsed, error = check_reply(text, req.schema)
            reply = TeacherReply(key=req.key, text=text, parsed=parsed, tokens_in=1, tokens_out=1, seconds=0.0,
                                 error=error)
            replies.append(reply)
            if on_reply:
                on_reply(reply)
        return replies


def test_a_round_of_garbage_replies_is_counted_never_crashes(tiny_gguf: Path, tmp_path: Path) -> None:
    from conftest import tiny_config_doc

    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db", rounds=2, targets="all")
    doc["checks"] = {"length": 0, "label_balance": 0, "requested_label": False}
    cfg = resolve(doc)
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))
    loop = Loop(store, run_id)
    teacher = GarbageTeacher([r.input for r in store.examples(run_id, split="seed")])
    loop.models.teacher = lambda meter: teacher  # type: ignore[method-assign]
    assert loop.run() == "finished"
    r0 = store.round(run_id, 0)
    augment, filtered = r0.augment, r0.filter
    # 8 seeds, one call each, cycling through the 6 kinds of garbage: 0 1 2 3 4 5 0 1
    assert augment["requests"] == 8 and augment["failed_calls"] == 4
    assert augment["failed_reasons"] == {"extra_keys": 1, "schema": 1, "invalid_json": 1, "empty_reply": 1}
    assert filtered["reasons"] == {"empty_input": 2, "copy_of_seed": 2, "wrong_language": 2, "prompt_echo": 2}
    assert r0.generated == r0.rejected == 8 and r0.kept == 0
