"""Real rows the run does not use (the `oracle` arm's source): the data file's labelled rows outside seed, validation and
test."""

from __future__ import annotations

from collections.abc import Sequence

from engine.config.schema import RunConfig
from engine.data.dedup import normalise
from engine.data.load import to_examples
from engine.data.readers import load_rows
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
