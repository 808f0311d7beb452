"""`data.unlabeled`: a file of real inputs without labels, read and checked like the other data files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.config.schema import RunConfig
from engine.data.dedup import normalise
from engine.data.load import input_text, refuse_bad_rows
from engine.data.readers import load_rows
from engine.filter.checks import LanguageCheck
from engine.tasks.base import Task
from engine.tasks.common import RowProblem
from models.errors import ConfigError, DataError


@dataclass
class UnlabeledPool:
    """The pool's usable texts and where each came from, with what was dropped and why."""

    path: Path
    texts: list[str]
    rows: list[int]  # each text's 0-based row in the file
    dropped_as_split: int = 0  # equal to a seed, validation or test text
    dropped_repeats: int = 0  # a text already earlier in the pool
    dropped_language: int = 0  # confidently in another language than the seeds
    notes: list[str] = field(default_factory=list)  # one line each, for the run log and the CLI

    @property
    def digest(self) -> str:
        """SHA-256 of the usable texts in order: what the pool is, wherever its file lies."""
        return hashlib.sha256(json.dumps(self.texts, ensure_ascii=False).encode()).hexdigest()


def load_unlabeled(cfg: RunConfig, task: Task, split_texts: Sequence[str], seed_texts: Sequence[str]) -> UnlabeledPool:
    """Every row of data.unlabeled validated (file:line for a bad row, nothing kept), minus the run's own texts,
    repeats and rows in another language than the seeds."""
    path = cfg.data.unlabeled
    if path is None:
        raise ConfigError("loop.source = 'pool' needs data.unlabeled: a file of real inputs without labels")
    if not cfg.checks.verify:
        raise ConfigError("loop.source = 'pool' needs checks.verify = true: the teacher's blind label is what labels a "
                          "pool row")
    if task.kind != "classification":
        raise ConfigError(f"loop.source = 'pool': the teacher labels pool rows blind, which needs a classification "
                          f"task (this one is {task.kind})")
    try:
        rows = load_rows(path)
    except DataError as err:
        raise DataError(f"data.unlabeled: {err}") from None
    texts: list[str] = []
    problems: list[str] = []
    for i, row in enumerate(rows):
        try:
            texts.append(input_text(row, task, cfg.data, first=i == 0))
        except RowProblem as err:
            problems.append(f"{rows.where(i)}: {err}")
    refuse_bad_rows(problems)
    pool = UnlabeledPool(path=Path(path), texts=[], rows=[])
    if any(cfg.data.target_field in row for row in rows):
        pool.notes.append(f"{path}: rows carry a '{cfg.data.target_field}' field; the pool's labels are not used "
                          "(the teacher labels each row blind)")
    used = {normalise(t) for t in split_texts}
    language = LanguageCheck(seed_texts) if cfg.checks.language else None
    seen: set[str] = set()
    for i, text in enumerate(texts):
        key = normalise(text)
        if key in used:
            pool.dropped_as_split += 1
        elif key in seen:
            pool.dropped_repeats += 1
        elif language is not None and not language.allows(text, None):
            pool.dropped_language += 1
        else:
            seen.add(key)
            pool.texts.append(text)
            pool.rows.append(i)
    if pool.dropped_as_split:
        pool.notes.append(f"{path}: {pool.dropped_as_split} rows equal a seed, validation or test text and were dropped")
    if pool.dropped_language:
        pool.notes.append(f"{path}: {pool.dropped_language} rows are in another language than the seeds "
                          f"({language.majority if language else '?'}) and were dropped")
    if not pool.texts:
        raise DataError(f"{path}: no usable rows in the unlabeled pool ({len(texts)} read, all dropped)")
    return pool

