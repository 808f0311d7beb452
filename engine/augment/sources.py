"""New examples that no teacher writes (loop.source): word edits of a miss (eda), real labelled rows near it (oracle),
or real unlabeled rows near it (pool), each a candidate that the filter phase judges like any other."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.augment.eda import edits, vocabulary
from engine.augment.real_rows import unused_rows
from engine.augment.requests import Target, derive_seed
from engine.config.schema import RunConfig
from engine.data.example_rows import example_from_row
from engine.data.retrieval import BM25
from engine.store.rows import StoredExample
from engine.tasks.base import Example, Task


@dataclass(frozen=True)
class Candidate:
    """A new example and the target it was made for."""

    example: Example
    parent: StoredExample


def eda_candidates(cfg: RunConfig, round_idx: int, targets: Sequence[Target], seeds: Sequence[StoredExample]) -> list[Candidate]:
    """k word-level edits of each target, replacements and insertions from the seed vocabulary; seeded per target."""
    vocab = vocabulary(r.input for r in seeds)
    out = []
    for target in targets:
        parent = example_from_row(target.row)
        rng = random.Random(derive_seed(cfg.seed, round_idx, "eda:" + target.row.content_hash))
        for text in edits(parent.input, target.k, vocab, rng):
            out.append(Candidate(_like(parent, text, {"origin": "eda"}), target.row))
    return out


def _like(parent: Example, text: str, meta: dict[str, Any]) -> Example:
    """An example with another text and the parent's label."""
    return Example(input=text, target=parent.target, answer=parent.answer, choices=parent.choices, meta=meta)


def _picks(cfg: RunConfig, round_idx: int, index: BM25, target: Target, allowed: np.ndarray) -> list[int]:
    """Rows for one target: the nearest by BM25, or (loop.pool_pick = random) as many drawn at random."""
    if cfg.loop.pool_pick == "nearest":
        return index.nearest(target.row.input, target.k, allowed)
    free = np.flatnonzero(allowed)
    rng = random.Random(derive_seed(cfg.seed, round_idx, "pick:" + target.row.content_hash))
    return sorted(rng.sample([int(i) for i in free], min(target.k, len(free))))


def oracle_candidates(cfg: RunConfig, task: Task, round_idx: int, targets: Sequence[Target],
                      run_texts: Sequence[str]) -> list[Candidate]:
    """Real rows of the data file that the run does not use, with their true labels, nearest each target (of its
    label for classification); a row goes to one target only."""
    rows = unused_rows(cfg, task, run_texts)
    if not rows:
        return []
    index = BM25([ex.input for ex in rows])
    answers = np.array([ex.answer for ex in rows], dtype=object)
    free = np.ones(len(rows), dtype=bool)
    out = []
    for target in targets:
        allowed = free & (answers == target.row.answer) if task.kind == "classification" else free.copy()
        for i in _picks(cfg, round_idx, index, target, allowed):
            free[i] = False
            out.append(Candidate(_like(rows[i], rows[i].input, {**rows[i].meta, "origin": "oracle"}), target.row))
    return out


def pool_candidates(cfg: RunConfig, round_idx: int, targets: Sequence[Target], texts: Sequence[str],
                    rows: Sequence[int], taken: set[int], path: str, index: BM25) -> tuple[list[Candidate], int]:
    """Unlabeled pool rows (not taken by an earlier round) nearest each target by `index` (BM25 of `texts`), each given
    the target's label for the teacher's blind verification to confirm; returns the candidates and how many were asked
    for."""
    free = np.array([r not in taken for r in rows], dtype=bool)
    out = []
    asked = 0
    for target in targets:
        asked += target.k
        parent = example_from_row(target.row)
        for i in _picks(cfg, round_idx, index, target, free.copy()):
            free[i] = False
            out.append(Candidate(_like(parent, texts[i], {"origin": "pool", "pool_file": path, "pool_row": rows[i]}),
                                 target.row))
    return out, asked
