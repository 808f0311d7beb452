"""Real rows the run does not use (the `oracle` arm's source): the data file's rows outside seed, validation and test,
and the ones nearest a miss."""

from __future__ import annotations

from collections.abc import Sequence

from rapidfuzz import fuzz, process

from engine.config import RunConfig
from engine.data import to_examples
from engine.dedup import normalise
from engine.readers import load_rows
from engine.tasks.base import Example, Task


def unused_rows(cfg: RunConfig, task: Task, used_texts: Sequence[str]) -> list[Example]:
    """Labelled rows of data.pool (else data.seed) whose text is in no split of the run, in file order."""
    path = cfg.data.pool if cfg.data.pool is not None else cfg.data.seed
    if path is None:
        return []
    used = {normalise(t) for t in used_texts}
    seen: set[str] = set()
    out = []
    for ex in to_examples(load_rows(path), task, cfg.data, path):
        key = normalise(ex.input)
        if key not in used and key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def nearest(query: str, rows: Sequence[Example], k: int, taken: set[int]) -> list[int]:
    """Indices of the k rows most alike `query` by word overlap (rapidfuzz token_set_ratio on normalised text),
    skipping `taken`."""
    if k <= 0:
        return []
    choices = {i: normalise(rows[i].input) for i in range(len(rows)) if i not in taken}
    found = process.extract(normalise(query), choices, scorer=fuzz.token_set_ratio, limit=k)
    return [i for _, _, i in found]
