"""Examples as store rows and back: the one place that knows an example row's columns."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from engine.store.rows import StoredExample
from engine.tasks.base import Example


def example_from_row(row: StoredExample | Mapping[str, Any]) -> Example:
    """Rebuild an Example from a store row (typed, or a dict of `Store.training_set`)."""
    if isinstance(row, StoredExample):
        choices = tuple(row.choices) if row.choices else None
        return Example(input=row.input, target=row.target, answer=row.answer, choices=choices, meta=row.meta or {})
    choices = tuple(row["choices"]) if row.get("choices") else None
    return Example(input=row["input"], target=row["target"], answer=row["answer"], choices=choices, meta=row.get("meta") or {})


def content_hash(ex: Example) -> str:
    """Stable hash of an example's content (equal across runs on the same data)."""
    payload = json.dumps([ex.input, ex.target, ex.answer, list(ex.choices or [])], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def example_row(run_id: int, split: str, ex: Example, *, status: str = "kept", origin_round: int | None = None,
                parent_id: int | None = None, teacher_call: str | None = None) -> dict[str, Any]:
    """The store row of an example."""
    return {"run_id": run_id, "split": split, "input": ex.input, "target": ex.target, "answer": ex.answer,
            "choices": list(ex.choices) if ex.choices else None, "origin_round": origin_round, "parent_id": parent_id,
            "teacher_call": teacher_call, "content_hash": content_hash(ex), "status": status, "meta": ex.meta or None}
