"""The restatement rule (issue 29) on real rows: a teacher's rewording of its seed or a sibling is rejected, distinct real
rows are not."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from engine.config.schema import ChecksConfig, resolve
from engine.data.dedup import RESTATEMENT, ContentWords, Restatements, comparable, containment, restates
from engine.data.example_rows import example_row
from engine.filter.filtering import CandidateFilter
from engine.store.rows import StoredExample
from engine.tasks.base import Example
from engine.tasks.registry import make_task

FIXTURES = Path(__file__).parent / "fixtures"
# real rows and the teacher's restatements of issue 29; each row names its source (PROVENANCE-restatement_pairs.md)
PAIRS = [json.loads(line) for line in (FIXTURES / "restatement_pairs.jsonl").read_text(encoding="utf-8").splitlines()]
SEED, RESTATED, RESTATED_TOO = PAIRS[0]["a"]["text"], PAIRS[0]["b"]["text"], PAIRS[1]["b"]["text"]


def jsonl(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (FIXTURES / name).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("pair", PAIRS, ids=[p["why"][:60] for p in PAIRS])
def test_real_pairs_are_decided_as_expected_both_ways(pair: dict[str, Any]) -> None:
    a, b = ContentWords.of(pair["a"]["text"]), ContentWords.of(pair["b"]["text"])
    expected = pair["expect"] == "restatement"
    assert restates(a, b, RESTATEMENT) is expected, (pair["why"], containment(a, b), comparable(a, b))
    assert restates(b, a, RESTATEMENT) is expected, "the rule is symmetric"


def test_the_issue_29_restatement_of_a_math_seed() -> None:
    seed, restated = ContentWords.of(SEED), ContentWords.of(RESTATED)
    # \frac34 and 3/4 both read "3 4"; the degree sign and "then what is" / "find the" say nothing
    assert seed.numbers == restated.numbers | {"90"} and {"triangle", "angle", "yz", "xy"} <= set(restated.text.split())
    assert 0.84 < containment(seed, restated) < 0.85, "measured: 0.849, over the 0.8 threshold"
    rule = Restatements()
    assert rule.match(RESTATED, 7, SEED) == 7, "restates its parent"
    assert rule.match(RESTATED, 7, None) is None, "no parent text, no sibling yet"
    rule.add(RESTATED_TOO, 11, 7)
    assert rule.match(RESTATED, 7, None) == 11, "restates a sibling written for the same parent"
    assert rule.match(RESTATED, 8, None) is None, "siblings of another parent are not compared"
    assert Restatements(0).match(RESTATED, 7, SEED) is None, "threshold 0: the rule is off"
    assert Restatements(0.86).match(RESTATED, 7, SEED) is None
    with pytest.raises(ValueError):
        Restatements(1.5)


def test_no_two_distinct_real_rows_of_the_fixtures_restate_each_other() -> None:
    sets = {"math_topic_42.jsonl": "problem", "rotten_tomatoes_20.jsonl": "text", "gsm8k_10.jsonl": "question",
            "mawps_10.jsonl": "input", "mmlu_stem_12.jsonl": "question"}
    for name, field in sets.items():
        words = [ContentWords.of(row[field]) for row in jsonl(name)]
        flagged = [(i, j) for (i, a), (j, b) in itertools.combinations(enumerate(words), 2) if restates(a, b, RESTATEMENT)]
        assert flagged == [], name


def test_content_words_drop_markup_drawings_and_function_words() -> None:
    assert ContentWords.of(r"If $\tan Y = \frac34$, find $\angle X$ in $^\circ$.").text == "3 4 angle tan x y"
    assert ContentWords.of(r"$\dfrac{3}{4}$ of the 3/4") == ContentWords.of("3 4"), "one number set however a fraction is written"
    drawing = "How many paths are there?[asy]size(4cm,4cm);int w=6;draw((0,0)--(3,0));[/asy]"
    assert ContentWords.of(drawing).text == "many paths"
    short = ContentWords.of("No surprises.")
    assert short.size == 1 and containment(short, ContentWords.of("It offers no surprises at all.")) == 1.0
    assert not comparable(short, short), "a short text contains or is contained too easily: exempt"


def task_rows(task_preset: str) -> tuple[Any, list[StoredExample]]:
    task = make_task(resolve({"task": {"preset": task_preset}}).task)
    rows = jsonl("math_topic_42.jsonl") + [{"problem": SEED, "type": "Geometry"}]
    existing = [StoredExample.from_row({**example_row(1, "seed", Example(input=r["problem"], target=" " + r["type"],
                                                                        answer=r["type"])), "id": i, "reason": None})
                for i, r in enumerate(rows)]
    return task, existing


def pending_row(row_id: int, text: str, parent: int, meta: dict[str, Any] | None = None) -> StoredExample:
    ex = Example(input=text, target=" Geometry", answer="Geometry", meta={"requested_label": "Geometry", **(meta or {})})
    row = example_row(1, "synthetic", ex, status="pending", origin_round=0, parent_id=parent)
    return StoredExample.from_row({**row, "id": row_id, "reason": None})


def test_the_filter_rejects_restatements_of_the_parent_and_siblings_only() -> None:
    task, existing = task_rows("math_topic")
    seed_id = len(existing) - 1
    other = PAIRS[4]["a"]["text"]  # a real MATH row (train line 216), distinct from the seed
    pending = [pending_row(100, RESTATED_TOO, seed_id), pending_row(101, RESTATED, seed_id),
               pending_row(102, other, seed_id),
               pending_row(103, RESTATED, seed_id, {"origin": "eda"})]
    checks = ChecksConfig(verify=False, label_balance=0)
    decisions = CandidateFilter(task, checks, 0.9, existing, existing).decide(pending, None, seed=0)
    assert decisions.rejected.get(100) == "restatement" and decisions.rejected.get(101) == "restatement"
    assert 103 not in decisions.rejected, "another source's rows (eda edits, real rows) are not the teacher's restatements"
    assert decisions.kept == [102, 103], "a distinct real row written for the same parent is kept"
    off = checks.model_copy(update={"restatement": 0.0})  # ChecksConfig(restatement=0) once the field exists
    assert "restatement" not in CandidateFilter(task, off, 0.9, existing, existing).decide(pending, None, seed=0).reasons
