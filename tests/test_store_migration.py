"""A store written at schema v3 (sweep cells keyed by arm and seed set) opens in today's code: its cells get seed
size 0 (the config's own), and a new cell of another size can sit beside an old one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import sqlite_utils

from engine.store.db import MIGRATIONS, SCHEMA_VERSION, Store


def _v3_store(path: Path) -> None:
    db = sqlite_utils.Database(sqlite3.connect(str(path)))
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version in (1, 2, 3):
        MIGRATIONS[version](db)
        db.table("schema_version").insert({"version": version})
    db.table("runs").insert({"id": 1, "name": "old · llm2llm · set 0", "created": "t", "status": "finished",
                             "config": "{}"})
    db.table("sweeps").insert({"id": 1, "name": "old", "created": "t", "status": "finished", "doc": "{}",
                               "arms": json.dumps([{"name": "llm2llm", "overrides": [], "about": ""}]), "seed_sets": 1,
                               "digest": "d"})
    db.table("sweep_runs").insert({"sweep_id": 1, "arm": "llm2llm", "seed_set": 0, "run_id": 1, "overrides": "[]"})
    db.conn.commit()
    db.conn.close()


def test_a_v3_store_opens_with_its_cells_at_the_configs_size(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _v3_store(path)
    store = Store(path, create=False)
    assert store.db.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    (cell,) = store.sweep_runs(1)
    assert cell.seed_size == 0 and cell.run_id == 1
    sweep = store.sweep(1)
    assert sweep.seed_sizes is None and sweep.judge is None and sweep.arms[0]["name"] == "llm2llm"
    with store.transaction():  # the same arm and seed set at another size is another cell
        store.add_sweep_run(1, "llm2llm", 0, 1, [], seed_size=8)
    assert sorted(c.seed_size for c in store.sweep_runs(1)) == [0, 8]
