"""The scale bench on a small store: every read it times works, and the examples screen's queries use indexes."""

from __future__ import annotations

import sys
from pathlib import Path

from engine.store.db import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

from bench_scale import build_store, measure  # noqa: E402


def test_bench_reads_run_on_a_small_store(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    run_id = build_store(path, n_examples=3000, n_rounds=4, seed_n=100, eval_n=50)
    store = Store(path, create=False)
    assert store.count("examples") >= 2900 and store.count("rounds") == 4
    store.close()
    rows = measure(path, run_id, repeat=1)
    assert len(rows) == 17 and all(first >= 0 for _, first, _ in rows)


def test_hot_queries_use_indexes(tmp_path: Path) -> None:
    """What keeps the reads flat at 100k examples: no full scan of examples or predictions."""
    path = tmp_path / "l2l.db"
    build_store(path, n_examples=600, n_rounds=3, seed_n=20, eval_n=10)
    db = Store(path, create=False).db
    queries = {
        "predictions of one example": ("SELECT * FROM predictions WHERE run_id = ? AND example_id = ? ORDER BY round, example_id", [1, 5]),
        "children of an example": ("SELECT id FROM examples WHERE run_id = ? AND parent_id = ? ORDER BY id", [1, 5]),
        "examples written in a round": ("SELECT COUNT(*) FROM examples e WHERE e.run_id = ? AND e.origin_round = ?", [1, 1]),
        "examples by reason": ("SELECT COUNT(*) FROM examples e WHERE e.run_id = ? AND e.reason = ?", [1, "meta_text"]),
        "teacher calls of a round": ("SELECT COUNT(*) FROM teacher_calls WHERE run_id = ? AND round = ?", [1, 1]),
        "events tail": ("SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT 300", [1]),
    }
    for name, (sql, args) in queries.items():
        plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args))
        assert "USING" in plan and not any(step.startswith("SCAN") and "USING" not in step for step in plan.split(" / ")), \
            f"{name}: {plan}"
