"""Rows as stored, for copying runs between stores (`l2l merge`): a read-only source at its schema version, and the
copy of a run, its teacher calls and its sweep cells into a target under new ids. What to copy is the caller's call."""

from __future__ import annotations

import json
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.store.db import SCHEMA_VERSION, Store, now
from engine.store.status import RunStatus
from models.errors import StoreError

SPLITS = ("seed", "validation", "test")
RUN_TABLES = ("rounds", "examples", "predictions", "events")  # what belongs to a run besides its row (progress: transient)

Row = dict[str, Any]


def source_version(path: Path) -> int:
    """The schema version of a store file, or StoreError naming it: not a store, or newer than this code."""
    try:
        with _read_only(path) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone() is None:
                raise StoreError(f"{path}: not an llm2llm store (no schema_version table)")
            version = int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not an llm2llm store ({err})") from None
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema v{version} is newer than this llm2llm (v{SCHEMA_VERSION}); upgrade llm2llm")
    return version


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a store file (a merge never writes to its sources)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def open_source(path: Path, version: int) -> Iterator[StoredRows]:
    """A source's rows inside one snapshot; an older schema is migrated in a temporary copy, not in place."""
    if version == SCHEMA_VERSION:
        with _read_only(path) as conn:
            conn.execute("BEGIN")  # one committed state even while a worker writes to the source
            yield StoredRows(sqlite_utils.Database(conn))
        return
    with tempfile.TemporaryDirectory(prefix="l2l-merge-") as tmp, _read_only(path) as conn:
        copy = Path(tmp) / "source.db"
        dest = sqlite3.connect(str(copy))
        conn.backup(dest)
        dest.close()
        store = Store(copy, create=False)  # migrates the copy to this code's schema
        try:
            yield StoredRows(store.db)
        finally:
            store.close()


class StoredRows:
    """A store's rows exactly as stored (every column, JSON undecoded), to be copied column by column."""

    def __init__(self, db: sqlite_utils.Database) -> None:
        self.db = db

    def _rows(self, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[Row]:
        return [dict(row) for row in self.db.query(sql, args)]

    def runs(self, name: str | None = None) -> list[Row]:
        """Every run (or every run of one name), by id."""
        if name is None:
            return self._rows("SELECT * FROM runs ORDER BY id")
        return self._rows("SELECT * FROM runs WHERE name = ? ORDER BY id", [name])

    def split_hashes(self, run_id: int) -> dict[str, list[str]]:
        """The content hashes of a run's seed, validation and test examples, per split."""
        hashes: dict[str, list[str]] = {s: [] for s in SPLITS}
        for split, digest in self.db.execute("SELECT split, content_hash FROM examples WHERE run_id = ? AND split IN "
                                             "(?, ?, ?)", [run_id, *SPLITS]).fetchall():
            hashes[split].append(digest)
        return hashes

    def run_rows(self, table: str, run_id: int) -> list[Row]:
        """A run's rows of one of RUN_TABLES, in the order they were written."""
        order = {"rounds": "idx", "predictions": "round, example_id"}.get(table, "id")
        return self._rows(f"SELECT * FROM [{table}] WHERE run_id = ? ORDER BY {order}", [run_id])

    def calls_for(self, run_ids: list[int]) -> list[Row]:
        """The teacher calls these runs made or were answered from, and the calls no run owns (a sweep's judge)."""
        ids = json.dumps(run_ids)
        return self._rows("SELECT * FROM teacher_calls WHERE run_id IN (SELECT value FROM json_each(?)) OR key IN "
                          "(SELECT teacher_call FROM examples WHERE run_id IN (SELECT value FROM json_each(?)) "
                          "AND teacher_call IS NOT NULL) OR run_id IS NULL ORDER BY rowid", [ids, ids])

    def sweeps(self) -> list[Row]:
        """Every sweep, by id."""
        return self._rows("SELECT * FROM sweeps ORDER BY id")

    def cells(self, sweep_id: int) -> list[Row]:
        """A sweep's cells, in the order they were made."""
        return self._rows("SELECT * FROM sweep_runs WHERE sweep_id = ? ORDER BY rowid", [sweep_id])


class TargetRows(StoredRows):
    """The store a merge writes into: inserts rows as stored, under new ids, inside the caller's transaction."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.db)
        self.columns = {t: set(self.db.table(t).columns_dict)
                        for t in ("runs", *RUN_TABLES, "teacher_calls", "sweeps", "sweep_runs")}

    def _insert(self, table: str, rows: list[Row]) -> None:
        """Insert rows (only the columns this schema has)."""
        if rows:
            names = [c for c in rows[0] if c in self.columns[table]]
            sql = f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in names)}) VALUES ({', '.join('?' * len(names))})"
            self.db.conn.executemany(sql, ([row.get(c) for c in names] for row in rows))

    def _insert_new(self, table: str, row: Row) -> int:
        """Insert one row under a new id (its own id dropped); the new id."""
        self._insert(table, [{k: v for k, v in row.items() if k != "id"}])
        return int(self.db.execute("SELECT last_insert_rowid()").fetchone()[0])

    def copy_run(self, src: StoredRows, run: Row) -> int:
        """Insert a source run under a new id with its rounds, examples (parents remapped), predictions and events."""
        dst = self._insert_new("runs", run)
        src_id = int(run["id"])
        self._insert("rounds", [{**r, "run_id": dst} for r in src.run_rows("rounds", src_id)])
        examples = src.run_rows("examples", src_id)
        # explicit ids, one block above the target's highest: parents are remapped whatever order they were written in
        base = int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM examples").fetchone()[0]) + 1
        ids = {int(e["id"]): base + i for i, e in enumerate(examples)}
        self._insert("examples", [{**e, "id": ids[int(e["id"])], "run_id": dst,
                                   "parent_id": None if e["parent_id"] is None else ids.get(int(e["parent_id"]))}
                                  for e in examples])
        self._insert("predictions", [{**p, "run_id": dst, "example_id": ids.get(int(p["example_id"]))}
                                     for p in src.run_rows("predictions", src_id)])
        self._insert("events", [{k: v for k, v in e.items() if k != "id"} | {"run_id": dst}
                                for e in src.run_rows("events", src_id)])
        return dst

    def call_keys(self, keys: list[str]) -> set[str]:
        """Which of these teacher call keys the target has."""
        return {r[0] for r in self.db.execute("SELECT key FROM teacher_calls WHERE key IN (SELECT value FROM "
                                              "json_each(?))", [json.dumps(keys)]).fetchall()}

    def insert_calls(self, rows: list[Row]) -> None:
        """Add teacher calls as they are."""
        self._insert("teacher_calls", rows)

    def insert_sweep(self, row: Row) -> int:
        """Add a sweep under a new id; its id."""
        return self._insert_new("sweeps", row)

    def insert_cell(self, cell: Row) -> None:
        """Add a sweep cell as it is."""
        self._insert("sweep_runs", [cell])

    def cell_statuses(self, sweep_id: int) -> dict[tuple[str, int, int], str | None]:
        """Each (arm, seed size, seed set) cell of a sweep and its run's status."""
        return {(c[0], c[1] or 0, c[2]): c[3] for c in self.db.execute(
            "SELECT c.arm, c.seed_size, c.seed_set, r.status FROM sweep_runs c LEFT JOIN runs r ON r.id = c.run_id "
            "WHERE c.sweep_id = ?", [sweep_id]).fetchall()}

    def finished_cells(self, sweep_id: int) -> int:
        """How many of a sweep's cells have a finished run."""
        return int(self.db.execute("SELECT COUNT(*) FROM sweep_runs c JOIN runs r ON r.id = c.run_id WHERE c.sweep_id = "
                                   "? AND r.status = ?", [sweep_id, RunStatus.FINISHED]).fetchone()[0])

    def finish_sweep(self, sweep_id: int) -> None:
        """Mark a sweep finished now."""
        stamp = now()
        self.db.execute("UPDATE sweeps SET status = ?, ended = ?, updated = ? WHERE id = ?",
                        [RunStatus.FINISHED, stamp, stamp, sweep_id])
