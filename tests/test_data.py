"""Data loading on real rows: formats, one clear error per bad file (file:line, field), deterministic splits."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config.schema import RunConfig, resolve
from engine.data.load import balanced_draw, load_splits, to_examples
from engine.data.readers import Rows, load_rows
from engine.tasks.registry import make_task
from models.errors import ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures"
RT20 = FIXTURES / "rotten_tomatoes_20.jsonl"


def config(preset: str, **data: Any) -> RunConfig:
    return resolve({"task": {"preset": preset}, "data": {k: str(v) if isinstance(v, Path) else v for k, v in data.items()}})


def load(preset: str, path: Path) -> list[Any]:
    cfg = config(preset)
    return to_examples(load_rows(path), make_task(cfg.task), cfg.data, path)


# --- formats ------------------------------------------------------------------------------------------------
def test_jsonl_csv_parquet_give_the_same_rows() -> None:
    first6 = [json.loads(line) for line in RT20.read_text(encoding="utf-8").splitlines()[:6]]
    for name in ("sentiment.csv", "sentiment.parquet"):
        rows = load_rows(FIXTURES / name)
        assert list(rows) == first6, name
    assert load(("rotten_tomatoes"), FIXTURES / "sentiment.csv") == load("rotten_tomatoes", FIXTURES / "sentiment.parquet")


def test_rows_know_their_lines() -> None:
    rows = load_rows(RT20)
    assert isinstance(rows, Rows) and len(rows) == 20 and rows.where(0) == f"{RT20}:line 1"
    assert "Responsável" in rows[1]["text"], "non-ASCII text survives"


def test_real_gsm8k_and_mawps_rows() -> None:
    gsm = load("gsm8k", FIXTURES / "gsm8k_10.jsonl")
    assert [ex.answer for ex in gsm][-2:] == ["-7", "1080"]
    mawps = load("mawps", FIXTURES / "mawps_10.jsonl")
    assert [ex.answer for ex in mawps][:3] == ["43", "26", "6"] and mawps[5].answer == "39"


# --- one clear error per bad file -----------------------------------------------------------------------
@pytest.mark.parametrize("name, preset, message", [
    ("bad_missing_field.jsonl", "rotten_tomatoes", ":line 3: field 'label' missing (fields present: text)"),
    ("bad_empty_text.jsonl", "rotten_tomatoes", ":line 4: field 'text' is empty"),
    ("bad_label.jsonl", "rotten_tomatoes", ":line 2: label 'neutral' not in [negative, positive]"),
    ("gsm8k_no_final_number.jsonl", "gsm8k", ":line 2: field 'answer' has no final number ('#### N')"),
    ("not_utf8.jsonl", "rotten_tomatoes", ": not UTF-8 at line 2 (byte 281"),
])
def test_bad_fixture_files(name: str, preset: str, message: str) -> None:
    with pytest.raises(DataError) as err:
        load(preset, FIXTURES / name)
    assert str(err.value).startswith(str(FIXTURES / name))
    assert message in str(err.value)
    assert "more bad row" not in str(err.value)


def test_wrong_field_names_say_which_fields_exist() -> None:
    with pytest.raises(DataError) as err:
        load("rotten_tomatoes", FIXTURES / "gsm8k_10.jsonl")
    text = str(err.value)
    assert ":line 1: field 'text' missing (fields present: question, answer, idx)" in text
    assert "data.input_field" in text and "(and 9 more bad rows)" in text


def test_bad_validation_file_fails_before_any_split(tmp_path: Path) -> None:
    cfg = config("rotten_tomatoes", seed=RT20, validation=FIXTURES / "bad_label.jsonl", test=RT20)
    with pytest.raises(DataError, match="bad_label.jsonl:line 2"):
        load_splits(cfg, make_task(cfg.task))


@pytest.mark.parametrize("content, message", [
    ('{"text": "fine", "label": "positive"}\n{"text": "broken", \n', ":line 2: not valid JSON"),
    ('{"text": "fine", "label": "positive"}\n\n["a", "list"]\n', ":line 3: expected a JSON object"),
    ("", ": no rows"),
    ("\n\n", ": no rows"),
])
def test_jsonl_problems(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "rows.jsonl"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DataError, match=message.replace("(", r"\(")):
        load_rows(path)


def test_missing_and_unsupported_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="file not found"):
        load_rows(tmp_path / "nope.jsonl")
    (tmp_path / "rows.xlsx").write_text("x")
    with pytest.raises(DataError, match=r"unsupported file type '.xlsx' \(use .jsonl"):
        load_rows(tmp_path / "rows.xlsx")
    (tmp_path / "junk.parquet").write_text("not parquet")
    with pytest.raises(DataError, match="junk.parquet: could not be read as parquet"):
        load_rows(tmp_path / "junk.parquet")


def test_csv_errors_name_the_physical_line(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerow(["a review\nspread over\nthree lines", "positive"])  # lines 2-4
        writer.writerow(["fine", "positive"])  # line 5
        writer.writerow(["", "negative"])  # line 6: empty text
        writer.writerow(["NA", "meh"])  # line 7: 'NA' is text, 'meh' a bad label
    with pytest.raises(DataError) as err:
        load("rotten_tomatoes", path)
    assert str(err.value) == f"{path}:line 6: field 'text' is empty (and 1 more bad row)"


def test_csv_values_stay_text(tmp_path: Path) -> None:
    path = tmp_path / "sst2.csv"
    path.write_text("text,label\nNA,0\nNone,1\n007,1\n", encoding="utf-8")
    examples = load("sst2", path)
    assert [(ex.input, ex.answer) for ex in examples] == [("NA", "negative"), ("None", "positive"), ("007", "positive")]


def test_integer_labels_through_label_map(tmp_path: Path) -> None:
    path = tmp_path / "sst2.jsonl"
    path.write_text('{"text": "great", "label": 1}\n{"text": "awful", "label": 0}\n{"text": "odd", "label": 2}\n', encoding="utf-8")
    with pytest.raises(DataError, match=r":line 3: label '2' not in \[negative, positive\] \(data.label_map maps 0, 1\)"):
        load("sst2", path)


# --- property test: what is written is what is read --------------------------------------------------------
texts = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(lambda s: s.strip() == s and s)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(texts, st.sampled_from(["negative", "positive"])), min_size=1, max_size=6))
def test_loaders_round_trip_any_text(tmp_path: Path, rows: list[tuple[str, str]]) -> None:
    jsonl_path, csv_path = tmp_path / "p.jsonl", tmp_path / "p.csv"
    jsonl_path.write_text("".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n" for t, lab in rows), encoding="utf-8")
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    for path in (jsonl_path, csv_path):
        examples = load("rotten_tomatoes", path)
        assert [(ex.input, ex.answer) for ex in examples] == rows, path.suffix


# --- splits -------------------------------------------------------------------------------------------------
def pool_cfg(**data: Any) -> RunConfig:
    base = {"pool": RT20, "seed_size": 8, "validation_size": 6, "test_size": 6, "split_seed": 1}
    return config("rotten_tomatoes", **(base | data))


def test_pool_split_is_deterministic_disjoint_and_recorded() -> None:
    cfg = pool_cfg()
    task = make_task(cfg.task)
    a, b = load_splits(cfg, task), load_splits(cfg, task)
    assert (a.seed, a.validation, a.test) == (b.seed, b.validation, b.test) and a.notes == b.notes
    idx = a.notes["indices"]
    assert sorted(idx["seed"] + idx["validation"] + idx["test"]) == list(range(20))
    pool = load("rotten_tomatoes", RT20)
    for split in ("seed", "validation", "test"):
        assert [ex.input for ex in getattr(a, split)] == [pool[i].input for i in idx[split]]
    assert a.notes["sizes"] == {"seed": 8, "validation": 6, "test": 6}
    assert a.notes["split_seed"] == 1 and a.notes["drawn_from"] == str(RT20)
    other = load_splits(pool_cfg(split_seed=2), task)
    assert other.notes["indices"] != idx
    json.dumps(a.notes)  # stored on the run as JSON


def test_test_rows_do_not_depend_on_seed_size() -> None:
    task = make_task(pool_cfg().task)
    small = load_splits(pool_cfg(seed_size=2), task)
    large = load_splits(pool_cfg(seed_size=8), task)
    assert small.test == large.test and small.validation == large.validation


def test_seed_size_is_label_balanced() -> None:
    cfg = config("rotten_tomatoes", seed=RT20, validation=FIXTURES / "sentiment.csv", test=FIXTURES / "sentiment.csv",
                 seed_size=6, split_seed=3)
    splits = load_splits(cfg, make_task(cfg.task))
    assert Counter(ex.answer for ex in splits.seed) == {"negative": 3, "positive": 3}
    assert splits.notes["label_counts"]["seed"] == {"negative": 3, "positive": 3}
    assert splits.notes["indices"]["validation"] == "all" and len(splits.validation) == 6


def test_balanced_draw_gives_the_rest_to_labels_that_have_rows() -> None:
    import random

    labels = {i: ("rare" if i < 2 else "common") for i in range(10)}
    picked = balanced_draw(list(range(10)), labels, 6, random.Random(0))
    assert Counter(labels[i] for i in picked) == {"rare": 2, "common": 4}


def test_seed_file_alone_is_split_when_validation_and_test_are_missing() -> None:
    cfg = config("rotten_tomatoes", seed=RT20, seed_size=4, validation_size=5, test_size=5)
    splits = load_splits(cfg, make_task(cfg.task))
    assert (len(splits.seed), len(splits.validation), len(splits.test)) == (4, 5, 5)
    assert splits.notes["drawn_from"] == str(RT20)
    assert not set(splits.notes["indices"]["seed"]) & set(splits.notes["indices"]["test"])


def test_pool_rows_equal_to_seed_rows_are_not_drawn() -> None:
    cfg = config("rotten_tomatoes", seed=FIXTURES / "sentiment.csv", pool=RT20, validation_size=7, test_size=7)
    splits = load_splits(cfg, make_task(cfg.task))
    assert splits.notes["pool_rows_dropped_as_seed_duplicates"] == 6
    assert splits.notes["input_overlap"] == {"seed~validation": 0, "seed~test": 0, "validation~test": 0}
    assert len(splits.seed) == 6


def test_pool_too_small_says_what_was_asked() -> None:
    cfg = pool_cfg(validation_size=200, test_size=500)
    with pytest.raises(DataError, match=r"20 usable rows, but seed_size 8 \+ test_size 500 \+ validation_size 200 = 708"):
        load_splits(cfg, make_task(cfg.task))


def test_no_data_and_no_choices_field_are_config_errors() -> None:
    cfg = config("rotten_tomatoes")
    with pytest.raises(ConfigError, match="data.seed or data.pool: required"):
        load_splits(cfg, make_task(cfg.task))
    mc = resolve({"task": {"kind": "multiple_choice"}, "data": {"pool": str(RT20)}})
    with pytest.raises(ConfigError, match="data.choices_field: required"):
        load_splits(mc, make_task(mc.task))


def test_choices_from_a_list_field_or_a_prefix(tmp_path: Path) -> None:
    path = tmp_path / "mc.jsonl"
    rows = [{"ctx": "2+2?", "endings": ["3", "4", "5", "6", "7"], "o_1": "4", "o_0": "3", "o_2": "5", "o_3": "6", "o_4": "7",
             "o_10": None, "gold": 1}]
    path.write_text(json.dumps(rows[0]) + "\n", encoding="utf-8")
    for spec in ("endings", "o_*"):
        cfg = resolve({"task": {"kind": "multiple_choice"},
                       "data": {"seed": str(path), "validation": str(path), "test": str(path), "input_field": "ctx",
                                "target_field": "gold", "choices_field": spec}})
        (ex,) = load_splits(cfg, make_task(cfg.task)).seed
        assert ex.choices == ("3", "4", "5", "6", "7") and ex.answer == "B", spec


def test_jsonl_lines_are_split_on_newlines_only(tmp_path: Path) -> None:
    path = tmp_path / "odd.jsonl"
    rows = [{"text": "one\u2028two\u0085three", "label": "positive"}, {"text": "crlf line", "label": "negative"}]
    path.write_bytes("\r\n".join(json.dumps(r, ensure_ascii=False) for r in rows).encode() + b"\r\n")
    assert [(ex.input, ex.answer) for ex in load("rotten_tomatoes", path)] == [(r["text"], r["label"]) for r in rows]
    assert load_rows(path).where(1) == f"{path}:line 2"


def test_repeated_pool_texts_are_drawn_once(tmp_path: Path) -> None:
    lines = RT20.read_text(encoding="utf-8").splitlines()
    path = tmp_path / "pool.jsonl"
    path.write_text("\n".join(lines + lines[:5]) + "\n", encoding="utf-8")
    cfg = config("rotten_tomatoes", pool=path, seed_size=8, validation_size=6, test_size=6)
    splits = load_splits(cfg, make_task(cfg.task))
    assert splits.notes["pool_rows_dropped_as_repeats"] == 5
    assert splits.notes["input_overlap"] == {"seed~validation": 0, "seed~test": 0, "validation~test": 0}


def test_sources_name_the_file_of_each_split() -> None:
    cfg = config("rotten_tomatoes", seed=FIXTURES / "sentiment.csv", pool=RT20, seed_size=4, validation_size=5, test_size=5)
    notes = load_splits(cfg, make_task(cfg.task)).notes
    assert notes["sources"] == {"test": str(RT20), "validation": str(RT20), "seed": str(FIXTURES / "sentiment.csv")}
    assert len(notes["indices"]["seed"]) == 4 and max(notes["indices"]["seed"]) < 6


def test_a_prompt_may_name_several_fields_of_a_row(tmp_path: Path) -> None:
    rows = [{"Body": f"Review {i}: {r['text']}", "Question": "Is this review positive?", "label": r["label"]}
            for i, r in enumerate(json.loads(line) for line in (FIXTURES / "rotten_tomatoes_20.jsonl").read_text().splitlines())]
    path = tmp_path / "two_fields.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    doc = {"task": {"kind": "classification", "labels": ["negative", "positive"],
                    "prompt": "Passage: {Body}\nQuestion: {Question}\nAnswer:"},
           "data": {"pool": str(path), "target_field": "label", "seed_size": 4, "validation_size": 4, "test_size": 4}}
    cfg = resolve(doc)
    task = make_task(cfg.task)
    ex = load_splits(cfg, task).seed[0]
    body = next(r["Body"] for r in rows if ex.input.startswith("Passage: " + r["Body"]))
    assert ex.input == f"Passage: {body}\nQuestion: Is this review positive?"
    assert task.render_prompt(ex) == ex.input + "\nAnswer:" and task.input_noun == "passage"
    doc["task"]["prompt"] = "Passage: {Body}\nQuestion: {Qestion}\nAnswer:"
    with pytest.raises(DataError, match=r"two_fields.jsonl:line 1: field 'Qestion' missing \(fields present: Body, "
                                        r"Question, label\); task.prompt names \{Qestion\}"):
        load_splits(resolve(doc), make_task(resolve(doc).task))
    doc["task"]["prompt"] = "{input} {Body}"
    with pytest.raises(ConfigError, match="either"):
        make_task(resolve(doc).task)
