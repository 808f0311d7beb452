"""False positives of the restatement rule (engine/data/dedup.py, issue 29) on real rows of the five shared data sets.

A distinct real row of the same data set and label stands in for a new example a teacher may rightly write from a seed:
the rule should almost never call it a restatement. For a seeded sample of rows of each data set this prints, at a few
thresholds and with each guard added in turn, (1) the share of rows whose nearest same-label real row is flagged (the
stress test: the closest of hundreds to thousands of rows, much closer than a typical new example) and (2) the share
of all same-label pairs flagged (the rule compares a candidate with its parent and its siblings only, so this is its
false-positive rate per comparison). Pairs the existing dedup already rejects (exact, copy, Indel ratio >= 0.9 after
folding math names) are left out and counted. Then it scores the MATH restatements of issue 29 and times the rule on a
100k-row store.

    .venv/bin/python bench/restatement_fp.py [--rows 1000] [--data ../shared/data] [--workers 1]

It reads the shared data (a bench may; the product and the tests never do) and writes nothing.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from rapidfuzz import fuzz, process

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.data.dedup import (  # noqa: E402
    RESTATEMENT,
    RESTATEMENT_MIN_NUMBERS,
    RESTATEMENT_MIN_SHARE,
    RESTATEMENT_MIN_WORDS,
    ContentWords,
    DedupIndex,
    Restatements,
    _is_copy,
    comparable,
    containment,
    fold_math_names,
    normalise,
)

THRESHOLDS = (0.75, 0.8, 0.85, 0.9, 0.95)
# each guard added in turn; the last line is the rule as engine/data/dedup.py applies it
Guard = Callable[[ContentWords, ContentWords], bool]
GUARDS: list[tuple[str, Guard]] = [
    ("containment alone", lambda a, b: comparable(a, b, 0, 0, 0)),
    (f"+ >= {RESTATEMENT_MIN_WORDS} content words", lambda a, b: comparable(a, b, RESTATEMENT_MIN_WORDS, 0, 0)),
    (f"+ like size (>= {RESTATEMENT_MIN_SHARE:.0%})", lambda a, b: comparable(a, b, RESTATEMENT_MIN_WORDS, RESTATEMENT_MIN_SHARE, 0)),
    (f"+ like numbers (Jaccard >= {RESTATEMENT_MIN_NUMBERS:.2f}): the rule", comparable),
]
# (data set, files, text field, label field or None): the label splits the rows into groups compared among themselves
DATASETS = [
    ("gsm8k", ("gsm8k/train.jsonl", "gsm8k/test.jsonl"), "question", None),
    ("mawps", ("mawps/addsub.jsonl", "mawps/multiarith.jsonl"), "input", None),
    ("rotten_tomatoes", ("rotten_tomatoes/train.jsonl", "rotten_tomatoes/test.jsonl"), "text", "label"),
    ("math_topic", ("math_topic/train.jsonl", "math_topic/test.jsonl"), "problem", "type"),
    ("mmlu_stem", ("mmlu_stem/test.jsonl",), "question", "type"),
]
# issue 29 (bench/RESULTS.md, MATH sweep 13, set 0, round 1): a seed, the kept restatement quoted in the issue, and the
# restatement quoted in RESULTS.md's round table
MATH_SEED = r"In $\triangle XYZ$, we have $\angle X = 90^\circ$ and $\tan Y = \frac34$.  If $YZ = 30$, then what is $XY$?"
MATH_RESTATED = [
    "In triangle ABC, we have an acute angle X and the tangent of angle Y is 3/4. If YZ equals 30, find the length of XY.",
    r"In triangle XYZ, we have $\angle X = 90^\circ$ and $\tan Y = \frac{3}{4}$. If $YZ = 30$, what is the length of $XY$?",
]


def read_jsonl(path: Path) -> list[dict[str, object]]:
    """Rows of a JSON-lines file (split on \\n only: some texts hold U+2028)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line.strip()]


def groups(data: Path, files: tuple[str, ...], field: str, label: str | None) -> dict[str, list[str]]:
    """The data set's distinct texts by label (one group when it has none)."""
    out: dict[str, list[str]] = {}
    for name in files:
        for row in read_jsonl(data / name):
            out.setdefault(str(row[label]) if label else "all", []).append(str(row[field]))
    return {key: list(dict.fromkeys(texts)) for key, texts in out.items()}


def already_duplicate(a: str, b: str) -> bool:
    """Whether the existing dedup (DedupIndex at 0.9) already rejects one text as a copy of the other."""
    x, y = normalise(fold_math_names(a)), normalise(fold_math_names(b))
    return x == y or _is_copy(x, y) or fuzz.ratio(x, y) >= 90


def measure(name: str, by_label: dict[str, list[str]], rows: int, workers: int, seed: int) -> dict[str, object]:
    """Nearest-neighbour and pair rates for one data set, per guard and threshold."""
    total = sum(len(t) for t in by_label.values())
    rng = random.Random(seed)
    nn = {(g, t): 0 for g, _ in GUARDS for t in THRESHOLDS}
    pairs = dict(nn)
    queried = compared = duplicates = long_enough = 0
    for texts in by_label.values():
        words = [ContentWords.of(t) for t in texts]
        long_enough += sum(w.size >= RESTATEMENT_MIN_WORDS for w in words)
        take = min(len(texts), max(1, round(rows * len(texts) / total)))
        picked = sorted(rng.sample(range(len(texts)), take))
        scores = process.cdist([words[i].text for i in picked], [w.text for w in words], scorer=fuzz.token_set_ratio,
                               score_cutoff=min(THRESHOLDS) * 100, workers=workers, dtype=np.float32)
        for r, i in enumerate(picked):
            scores[r, i] = 0
        best = {g: np.zeros(len(picked), dtype=np.float32) for g, _ in GUARDS}
        for r, c in zip(*np.nonzero(scores), strict=True):
            i = picked[r]
            if already_duplicate(texts[i], texts[c]):
                duplicates += 1
                continue
            score = float(scores[r, c]) / 100
            for g, guard in GUARDS:
                if guard(words[i], words[c]):
                    best[g][r] = max(best[g][r], score)
                    for t in THRESHOLDS:
                        pairs[g, t] += score >= t
        for g, _ in GUARDS:
            for t in THRESHOLDS:
                nn[g, t] += int((best[g] >= t).sum())
        queried += len(picked)
        compared += len(picked) * (len(texts) - 1)
    return {"name": name, "rows": total, "labels": len(by_label), "queried": queried, "pairs": compared,
            "duplicates": duplicates, "long_enough": long_enough / total, "nn": nn, "pair": pairs}


def print_table(results: list[dict[str, object]]) -> None:
    """Markdown tables: nearest same-label neighbour flagged (% of rows), then pairs flagged (per million)."""
    head = " | ".join(f">= {t:.2f}" for t in THRESHOLDS)
    print("\nNearest same-label real row flagged as a restatement (% of sampled rows):\n")
    print(f"| data set | guards | {head} |\n|---|---|{'---|' * len(THRESHOLDS)}")
    for res in results:
        nn, queried = res["nn"], res["queried"]
        assert isinstance(nn, dict) and isinstance(queried, int)
        for g, _ in GUARDS:
            print(f"| {res['name']} | {g} | " + " | ".join(f"{100 * nn[g, t] / queried:.1f}" for t in THRESHOLDS) + " |")
    print("\nSame-label pairs of distinct real rows flagged (per million pairs; the rule's rate per comparison):\n")
    print(f"| data set | guards | {head} |\n|---|---|{'---|' * len(THRESHOLDS)}")
    for res in results:
        pair, compared = res["pair"], res["pairs"]
        assert isinstance(pair, dict) and isinstance(compared, int)
        for g, _ in GUARDS:
            print(f"| {res['name']} | {g} | " + " | ".join(f"{1e6 * pair[g, t] / compared:.1f}" for t in THRESHOLDS) + " |")
    print("\n| data set | rows | labels | sampled rows | pairs | already duplicates (left out) | rows with >= "
          f"{RESTATEMENT_MIN_WORDS} content words |\n|---|---|---|---|---|---|---|")
    for res in results:
        share = res["long_enough"]
        assert isinstance(share, float)
        print(f"| {res['name']} | {res['rows']} | {res['labels']} | {res['queried']} | {res['pairs']} | {res['duplicates']} "
              f"| {100 * share:.1f}% |")


def math_example() -> None:
    """Issue 29's MATH restatements against their seed and each other."""
    seed = ContentWords.of(MATH_SEED)
    print(f"\nissue 29's MATH seed ({seed.size} content words): {seed.text}")
    for text in MATH_RESTATED:
        words = ContentWords.of(text)
        print(f"  {containment(words, seed):.3f} containment, comparable {comparable(words, seed)}, flagged at "
              f"{RESTATEMENT}: {Restatements(RESTATEMENT).match(text, 0, MATH_SEED) is not None} ({words.size} words): {text}")
    a, b = (ContentWords.of(t) for t in MATH_RESTATED)
    print(f"  the two restatements against each other (siblings): {containment(a, b):.3f}, comparable {comparable(a, b)}")


def timing(texts: list[str], seed: int) -> None:
    """The rule's cost per candidate with a 100k-row store (it reads only the parent and the siblings)."""
    rng = random.Random(seed)
    store = {i: f"{texts[i % len(texts)]} ({i})" for i in range(100_000)}
    parents = rng.sample(range(len(store)), 300)
    candidates = [(rng.choice(texts), p) for p in parents for _ in range(3)]
    rule = Restatements(RESTATEMENT)
    start = time.perf_counter()
    for n, (text, parent) in enumerate(candidates):
        if rule.match(text, parent, store[parent]) is None:
            rule.add(text, n, parent)
    per = (time.perf_counter() - start) / len(candidates)
    index = DedupIndex(0.9)
    for i, text in store.items():
        index.add(text, i)
    start = time.perf_counter()
    for text, _ in candidates[:5]:
        index.match(text)
    dedup = (time.perf_counter() - start) / 5
    print(f"\ntiming, 100k-row store: the restatement rule {1e3 * per:.2f} ms per candidate ({len(candidates)} candidates, "
          f"300 parents, 3 siblings each); the existing DedupIndex.match over the same store {1e3 * dedup:.0f} ms per "
          "candidate, for scale")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--rows", type=int, default=1000, help="rows sampled per data set (their neighbours: all rows)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    results = []
    every: list[str] = []
    for name, files, field, label in DATASETS:
        start = time.perf_counter()
        by_label = groups(args.data, files, field, label)
        every += [t for texts in by_label.values() for t in texts]
        results.append(measure(name, by_label, args.rows, args.workers, args.seed))
        print(f"{name}: {time.perf_counter() - start:.0f}s", file=sys.stderr)
    print(f"restatement rule: threshold {RESTATEMENT}, >= {RESTATEMENT_MIN_WORDS} content words in each text, the smaller "
          f"word set >= {RESTATEMENT_MIN_SHARE:.0%} of the larger, number sets' Jaccard >= {RESTATEMENT_MIN_NUMBERS:.2f}; "
          f"{args.rows} rows sampled per data set (seed {args.seed})")
    print_table(results)
    math_example()
    timing(every, args.seed)


if __name__ == "__main__":
    main()
