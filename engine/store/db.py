"""The SQLite store (sqlite-utils, WAL): runs, rounds, examples, predictions, teacher calls, events, progress."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from engine.store.rows import (
    CellState,
    Event,
    ExampleFilter,
    ExampleListing,
    ExampleOptions,
    Prediction,
    Progress,
    Round,
    Run,
    RunListing,
    StoredExample,
    Sweep,
    SweepCounts,
    SweepRun,
    TeacherCall,
    decode_json,
)
from engine.store.status import RunStatus
from models.errors import StoreError


@contextmanager
def _without(*optional: str) -> Iterator[None]:
    """Make `import name` fail inside the block for modules not imported yet (None in sys.modules does that)."""
    blocked = [name for name in optional if name not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name) is None:
                del sys.modules[name]


with _without("pandas", "numpy"):  # sqlite_utils' optional type tables for them cost every `l2l` command half a second
    import sqlite_utils

SCHEMA_VERSION = 4

PHASES = ("train", "eval", "augment", "filter", "done")
RUN_STATUSES = tuple(RunStatus)
# Who made a synthetic example: examples.meta.origin (pool, eda, oracle: engine/augment/sources.py), else the teacher wrote it.
ORIGIN_SQL = ("CASE WHEN e.split != 'synthetic' THEN NULL WHEN json_valid(e.meta) "
              "THEN COALESCE(json_extract(e.meta, '$.origin'), 'teacher') ELSE 'teacher' END")
ORIGIN_ORDER = ("teacher", "pool", "eda", "oracle")


def beside_store(store_path: Path | str, kind: str) -> Path:
    """A folder of this store's own beside it (`runs`, `sweeps`): `kind` for the default l2l.db, `STEM-kind` for any
    other store, so two stores in one folder never write into one run's or sweep's folder."""
    path = Path(store_path)
    return path.parent / (kind if path.stem == "l2l" else f"{path.stem}-{kind}")


def run_folder(store_path: Path | str, run_id: int) -> Path:
    """Where a run keeps its adapters and worker log unless it was given a workdir."""
    return beside_store(store_path, "runs") / str(run_id)


def now() -> str:
    """UTC timestamp with milliseconds, ISO 8601."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def _migrate_v1(db: sqlite_utils.Database) -> None:
    db.table("runs").create(
        {
            "id": int, "name": str, "created": str, "updated": str, "status": str, "config": str,
            "config_hash": str, "versions": str, "seed": int, "pid": int, "host": str, "device": str,
            "plan": str, "splits": str, "error": str, "stop_requested": int, "ended": str, "best_round": int,
        },
        pk="id", not_null={"name", "created", "status", "config"}, defaults={"stop_requested": 0},
    )
    db.table("rounds").create(
        {
            "run_id": int, "idx": int, "phase": str, "train_size": int, "seed_acc": float, "val_acc": float,
            "test_acc": float, "misses": int, "generated": int, "kept": int, "rejected": int,
            "adapter_path": str, "train_loss": float, "phases": str,
        },
        pk=("run_id", "idx"), foreign_keys=[("run_id", "runs", "id")], defaults={"phases": "{}"},
    )
    db.table("examples").create(
        {
            "id": int, "run_id": int, "split": str, "input": str, "target": str, "answer": str,
            "choices": str, "origin_round": int, "parent_id": int, "teacher_call": str,
            "content_hash": str, "status": str, "reason": str, "meta": str,
        },
        pk="id", foreign_keys=[("run_id", "runs", "id")], defaults={"status": "kept"},
    )
    db.table("examples").create_index(["run_id", "split"])
    db.table("examples").create_index(["run_id", "parent_id"])
    db.table("predictions").create(
        {
            "run_id": int, "round": int, "example_id": int, "split": str, "output": str,
            "extracted": str, "correct": int, "confidence": float,
        },
        pk=("run_id", "round", "example_id"),
    )
    db.table("teacher_calls").create(
        {
            "key": str, "model": str, "prompt": str, "response": str, "ok": int, "tokens_in": int,
            "tokens_out": int, "seconds": float, "error": str, "created": str, "run_id": int, "round": int,
        },
        pk="key",
    )
    db.table("events").create(
        {"id": int, "run_id": int, "ts": str, "level": str, "kind": str, "message": str, "data": str},
        pk="id",
    )
    db.table("events").create_index(["run_id", "id"])
    db.table("progress").create(
        {
            "run_id": int, "round": int, "phase": str, "done": int, "total": int, "started": float,
            "updated": float, "message": str,
        },
        pk="run_id",
    )


def _migrate_v2(db: sqlite_utils.Database) -> None:
    db.table("sweeps").create(
        {"id": int, "name": str, "created": str, "updated": str, "status": str, "doc": str, "arms": str,
         "seed_sets": int, "digest": str, "source": str, "pid": int, "host": str, "ended": str, "error": str},
        pk="id", not_null={"name", "created", "status", "doc", "arms", "seed_sets", "digest"},
    )
    db.table("sweeps").create_index(["digest"])
    db.table("sweep_runs").create(
        {"sweep_id": int, "arm": str, "seed_set": int, "run_id": int, "overrides": str},
        pk=("sweep_id", "arm", "seed_set"), foreign_keys=[("sweep_id", "sweeps", "id"), ("run_id", "runs", "id")],
    )
    db.table("examples").create_index(["run_id", "status"])
    db.table("teacher_calls").add_column("purpose", str)  # 'write' (new examples) or 'verify' (blind check of one)
    db.table("runs").add_column("teacher", str)  # what the teacher backend reported when it first loaded (JSON)


def _migrate_v3(db: sqlite_utils.Database) -> None:
    # the claimant's process start time beside its pid: a pid reused by another process is not the worker
    db.table("runs").add_column("pid_started", float)
    db.table("sweeps").add_column("pid_started", float)
    # an example's answers across rounds (detail, lineage: in round order, no sort) and the browser's pages at 100k
    # examples (run_id alone is ordered by id: a page needs no sort)
    db.table("predictions").create_index(["run_id", "example_id", "round"])
    db.table("examples").create_index(["run_id"])
    db.table("examples").create_index(["run_id", "origin_round"])
    db.table("examples").create_index(["run_id", "reason"])
    db.table("teacher_calls").create_index(["run_id", "round"])


def _migrate_v4(db: sqlite_utils.Database) -> None:
    # a sweep's cells are arm x seed size x seed set: seed_size 0 is the config's own size (every sweep before v4)
    db.table("sweeps").add_column("seed_sizes", str)
    db.table("sweeps").add_column("judge", str)  # the teacher's blind accuracy on validation, measured once (JSON)
    db.table("sweep_runs").add_column("seed_size", int, not_null_default=0)
    db.table("sweep_runs").transform(pk=("sweep_id", "arm", "seed_size", "seed_set"))


MIGRATIONS = {1: _migrate_v1, 2: _migrate_v2, 3: _migrate_v3, 4: _migrate_v4}


class Store:
    """One SQLite file holding every run; writers in several processes (runs, sweeps) take turns, readers never wait."""

    def __init__(self, path: Path | str, *, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.exists():
            raise StoreError(f"{self.path}: no store here (start a run first, or pass --store)")
        if not self.path.exists():
            private_file(self.path)  # SQLite gives its -wal and -shm files the database file's permissions
        conn = sqlite3.connect(str(self.path), timeout=30, check_same_thread=False)
        self.db = sqlite_utils.Database(conn)
        self.db.execute("PRAGMA busy_timeout = 30000")
        self.db.enable_wal()
        self.db.execute("PRAGMA foreign_keys = ON")
        self.db.execute("PRAGMA synchronous = NORMAL")
        self.on_call_saved: Callable[[dict[str, Any]], None] | None = None  # told of each call once it is committed
        self._migrate()

    def _migrate(self) -> None:
        # reads first: a reader opening the store while a worker writes must not wait for the write lock
        if not self.db.table("schema_version").exists():
            self.db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = self.db.execute("SELECT MAX(version) FROM schema_version").fetchone()
        current = row[0] or 0
        if current > SCHEMA_VERSION:
            raise StoreError(f"{self.path}: store schema v{current} is newer than this llm2llm (v{SCHEMA_VERSION}); upgrade llm2llm")
        for version in range(current + 1, SCHEMA_VERSION + 1):
            with self.transaction():
                MIGRATIONS[version](self.db)
                self.db.table("schema_version").insert({"version": version})

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside commit together or not at all (nested blocks are savepoints).

        The outermost block takes the write lock at once (BEGIN IMMEDIATE): a deferred transaction that reads first
        cannot wait for another process's write lock (SQLite answers 'database is locked' at once to protect its
        snapshot), and with it a read-check-write inside the block is atomic against every other process.
        """
        conn = self.db.conn
        if conn.in_transaction:
            with self.db.atomic():
                yield
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            conn.rollback()
            raise
        conn.execute("COMMIT")

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one committed state of the store (WAL snapshot), never half of a writer's phase."""
        conn = self.db.conn
        if conn.in_transaction:
            yield
            return
        conn.execute("BEGIN")
        try:
            yield
        finally:
            if conn.in_transaction:
                conn.rollback()

    def close(self) -> None:
        """Close the connection."""
        self.db.conn.close()

    # runs -------------------------------------------------------------------------------------
    def create_run(self, name: str, config_json: str, config_hash: str, seed: int, versions: dict[str, str],
                   device: dict[str, Any], splits: dict[str, Any]) -> int:
        """Insert a new run in status 'created' and return its id."""
        ts = now()
        table = self.db.table("runs")
        table.insert({
            "name": name, "created": ts, "updated": ts, "status": RunStatus.CREATED, "config": config_json,
            "config_hash": config_hash, "versions": json.dumps(versions), "seed": seed,
            "device": json.dumps(device), "splits": json.dumps(splits), "host": os.uname().nodename,
        })
        return int(table.last_pk or 0)

    def run(self, run_id: int) -> Run:
        """One run."""
        try:
            row = self.db.table("runs").get(run_id)
        except sqlite_utils.db.NotFoundError:
            raise StoreError(f"{self.path}: no run {run_id}") from None
        return Run.from_row(row)

    def runs(self) -> list[Run]:
        """All runs, newest first."""
        return [Run.from_row(row) for row in self.db.query("SELECT * FROM runs ORDER BY id DESC")]

    def run_listings(self) -> list[RunListing]:
        """All runs, newest first, with a summary of their rounds."""
        sql = """
            SELECT r.*, (SELECT COUNT(*) FROM rounds WHERE run_id = r.id AND phase = 'done') AS rounds_done,
                   (SELECT MAX(val_acc) FROM rounds WHERE run_id = r.id) AS best_val
            FROM runs r ORDER BY r.id DESC"""
        return [RunListing.from_row(row) for row in self.db.query(sql)]

    def finished_runs_named(self, name: str) -> list[int]:
        """Ids of finished runs with this name, oldest first."""
        rows = self.db.execute("SELECT id FROM runs WHERE name = ? AND status = 'finished' ORDER BY id",
                               [name]).fetchall()
        return [int(r[0]) for r in rows]

    def update_run(self, run_id: int, **fields: Any) -> None:
        """Set columns of a run (dicts are stored as JSON)."""
        fields = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in fields.items()}
        fields["updated"] = now()
        self.db.table("runs").update(run_id, fields)

    def delete_run(self, run_id: int) -> None:
        """Remove a run and everything that belongs to it (teacher cache is kept: it is shared)."""
        with self.transaction():
            self.db.execute("DELETE FROM sweep_runs WHERE run_id = ?", [run_id])
            for table in ("predictions", "examples", "rounds", "events", "progress"):
                self.db.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            self.db.execute("DELETE FROM runs WHERE id = ?", [run_id])

    def owner(self, table: str, row_id: int) -> Run | Sweep:
        """The run (table 'runs') or sweep ('sweeps') whose worker claims are checked."""
        return self.run(row_id) if table == "runs" else self.sweep(row_id)

    def set_owner(self, table: str, row_id: int, pid: int, pid_started: float | None, host: str) -> None:
        """Make a process the worker of a run or sweep: running, no error (inside the caller's transaction)."""
        self.db.execute(f"UPDATE {table} SET status = ?, pid = ?, pid_started = ?, host = ?, error = NULL, updated = ? "
                        "WHERE id = ?", [RunStatus.RUNNING, pid, pid_started, host, now(), row_id])

    # rounds -----------------------------------------------------------------------------------
    def rounds(self, run_id: int) -> list[Round]:
        """Rounds of a run in order."""
        rows = self.db.query("SELECT * FROM rounds WHERE run_id = ? ORDER BY idx", [run_id])
        return [Round.from_row(row) for row in rows]

    def round(self, run_id: int, idx: int) -> Round | None:
        """One round, or None."""
        rows = self.db.query("SELECT * FROM rounds WHERE run_id = ? AND idx = ?", [run_id, idx])
        for row in rows:
            return Round.from_row(row)
        return None

    def existing_round(self, run_id: int, idx: int) -> Round:
        """One round that the caller knows was written."""
        row = self.round(run_id, idx)
        if row is None:
            raise LookupError(f"run {run_id} has no round {idx}")
        return row

    def upsert_round(self, run_id: int, idx: int, **fields: Any) -> None:
        """Create or update a round row."""
        fields = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in fields.items()}
        self.db.table("rounds").upsert({"run_id": run_id, "idx": idx, **fields}, pk=("run_id", "idx"))

    # examples ---------------------------------------------------------------------------------
    def insert_examples(self, rows: list[dict[str, Any]]) -> list[int]:
        """Insert example rows (inside the caller's transaction) and return their ids."""
        ids = []
        table = self.db.table("examples")
        for row in rows:
            row = {k: json.dumps(v) if isinstance(v, (dict, list, tuple)) else v for k, v in row.items()}
            table.insert(row)
            ids.append(int(table.last_pk or 0))
        return ids

    def examples(self, run_id: int, split: str | None = None, status: str | None = None,
                 origin_round: int | None = None) -> list[StoredExample]:
        """Examples of a run, optionally by split, status and origin round, in id order."""
        where: list[str] = ["run_id = ?"]
        args: list[object] = [run_id]
        for column, value in (("split", split), ("status", status), ("origin_round", origin_round)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = f"SELECT * FROM examples WHERE {' AND '.join(where)} ORDER BY id"
        return [StoredExample.from_row(row) for row in self.db.query(sql, args)]

    def training_set(self, run_id: int) -> Generator[dict[str, Any], None, None]:
        """The run's final training set, streamed: seed rows then kept synthetic rows, each in id order, with lineage
        columns (read inside one snapshot, so a worker writing meanwhile cannot split it)."""
        columns = "id, split, input, target, answer, choices, origin_round, parent_id, teacher_call"
        with self.snapshot():
            for where in ("split = 'seed'", "split = 'synthetic' AND status = 'kept'"):  # two index walks, no sort
                cursor = self.db.conn.execute(f"SELECT {columns} FROM examples WHERE run_id = ? AND {where} "
                                              "ORDER BY id", [run_id])
                names = [d[0] for d in cursor.description]
                for values in cursor:
                    row = dict(zip(names, values, strict=True))
                    row["choices"] = decode_json(row["choices"])
                    if not row["choices"]:
                        del row["choices"]  # the key only where the task has options
                    yield row

    def set_example_status(self, example_id: int, status: str, reason: str | None = None) -> None:
        """Mark an example kept or rejected (with its reason), inside the caller's transaction."""
        self.db.table("examples").update(example_id, {"status": status, "reason": reason})

    def example(self, example_id: int) -> StoredExample:
        """One example by id."""
        return StoredExample.from_row(self.db.table("examples").get(example_id))

    def evaluated_rounds(self, run_id: int) -> list[int]:
        """Rounds of a run that have predictions, in order."""
        rows = self.db.execute("SELECT DISTINCT round FROM predictions WHERE run_id = ? ORDER BY round", [run_id])
        return [int(r[0]) for r in rows]

    def example_options(self, run_id: int) -> ExampleOptions:
        """The values each example filter can take in a run."""
        def distinct(column: str) -> list[Any]:
            sql = f"SELECT DISTINCT {column} FROM examples WHERE run_id = ? AND {column} IS NOT NULL ORDER BY {column}"
            return [r[0] for r in self.db.execute(sql, [run_id])]

        return ExampleOptions(split=distinct("split"), origin_round=distinct("origin_round"),
                              eval_round=self.evaluated_rounds(run_id), status=distinct("status"),
                              reason_counts=self.reason_counts(run_id), origin_counts=self.origin_counts(run_id))

    def origin_counts(self, run_id: int) -> dict[str, int]:
        """Synthetic examples per origin (teacher, pool, eda, oracle: ORIGIN_SQL), in that order, others after."""
        rows = self.db.execute(f"SELECT {ORIGIN_SQL} AS origin, COUNT(*) FROM examples e WHERE e.run_id = ? AND "
                               "e.split = 'synthetic' GROUP BY origin", [run_id])
        counts = {str(r[0]): int(r[1]) for r in rows}
        order = [o for o in ORIGIN_ORDER if o in counts] + sorted(o for o in counts if o not in ORIGIN_ORDER)
        return {o: counts[o] for o in order}

    def decided_origin_counts(self, run_id: int) -> dict[str, dict[str, int]]:
        """Synthetic examples kept and rejected (status: origin: count), by who made them."""
        rows = self.db.execute(f"SELECT e.status, {ORIGIN_SQL} AS origin, COUNT(*) FROM examples e WHERE e.run_id = ? "
                               "AND e.split = 'synthetic' AND e.status IN ('kept', 'rejected') GROUP BY e.status, origin",
                               [run_id])
        out: dict[str, dict[str, int]] = {}
        for status, origin, n in rows:
            out.setdefault(str(status), {})[str(origin)] = int(n)
        return out

    def kept_origins(self, run_id: int) -> dict[int, str]:
        """Origins of the kept synthetic examples no teacher wrote (their meta names one), by example id."""
        sql = ("SELECT id, origin FROM (SELECT id, CASE WHEN json_valid(meta) THEN json_extract(meta, '$.origin') END "
               "AS origin FROM examples WHERE run_id = ? AND split = 'synthetic' AND status = 'kept') "
               "WHERE origin IS NOT NULL")
        return {int(i): str(o) for i, o in self.db.execute(sql, [run_id]).fetchall()}

    def synthetic_decisions(self, run_id: int) -> list[tuple[int | None, str, str, int]]:
        """(origin round, status, reason or '', examples) of a run's synthetic examples, by origin round."""
        sql = ("SELECT origin_round, status, COALESCE(reason, ''), COUNT(*) FROM examples WHERE run_id = ? "
               "AND split = 'synthetic' GROUP BY origin_round, status, reason ORDER BY origin_round")
        return [(idx, str(status), str(reason), int(n)) for idx, status, reason, n in self.db.execute(sql, [run_id])]

    def reason_counts(self, run_id: int) -> dict[str, int]:
        """Examples per reason (every reason the run's examples carry), most frequent first."""
        rows = self.db.execute("SELECT reason, COUNT(*) FROM examples WHERE run_id = ? AND reason IS NOT NULL "
                               "GROUP BY reason ORDER BY COUNT(*) DESC, reason", [run_id])
        return {str(r[0]): int(r[1]) for r in rows}

    def example_page(self, run_id: int, flt: ExampleFilter, eval_round: int | None, limit: int,
                     offset: int) -> tuple[list[ExampleListing], int]:
        """One page of the examples matching the filter with the student's answer in eval_round, and the matches."""
        where: list[str] = ["e.run_id = ?"]
        args: list[Any] = [run_id]
        for column, value in (("split", flt.split), ("origin_round", flt.origin_round), ("status", flt.status),
                              ("reason", flt.reason)):
            if value is not None:
                where.append(f"e.{column} = ?")
                args.append(value)
        if flt.result is not None:
            where.append("p.correct = ?")
            args.append(1 if flt.result == "correct" else 0)
        if flt.text:
            where.append("(e.input LIKE ? OR e.target LIKE ?)")
            args += [f"%{flt.text}%"] * 2
        if flt.origin is not None:
            where.append(f"({ORIGIN_SQL}) = ?")
            args.append(flt.origin)
        join = "LEFT JOIN predictions p ON p.run_id = e.run_id AND p.example_id = e.id AND p.round = ?"
        clause = " AND ".join(where)
        total = self.db.execute(f"SELECT COUNT(*) FROM examples e {join} WHERE {clause}", [eval_round, *args]).fetchone()[0]
        sql = (f"SELECT e.id, e.split, e.origin_round, e.parent_id, e.status, e.reason, e.input, e.answer, "
               f"p.extracted, p.correct, {ORIGIN_SQL} AS origin FROM examples e {join} WHERE {clause} ORDER BY e.id "
               "LIMIT ? OFFSET ?")
        rows = [ExampleListing.from_row(r) for r in self.db.query(sql, [eval_round, *args, limit, offset])]
        return rows, int(total)

    def child_ids(self, run_id: int, parent_id: int) -> list[int]:
        """Ids of the examples written from one example, in id order."""
        rows = self.db.execute("SELECT id FROM examples WHERE run_id = ? AND parent_id = ? ORDER BY id", [run_id, parent_id])
        return [int(r[0]) for r in rows]

    def count(self, table: str, **where: Any) -> int:
        """Rows of a table matching column=value filters."""
        clause = " AND ".join(f"{k} = ?" for k in where) or "1"
        return int(self.db.execute(f"SELECT COUNT(*) FROM {table} WHERE {clause}", list(where.values())).fetchone()[0])

    # predictions ------------------------------------------------------------------------------
    def insert_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Insert or replace prediction rows (inside the caller's transaction)."""
        self.db.table("predictions").insert_all(rows, pk=("run_id", "round", "example_id"), replace=True)

    def predictions(self, run_id: int, round_idx: int | None = None, example_id: int | None = None) -> list[Prediction]:
        """Predictions of a run, by round and/or example."""
        where: list[str] = ["run_id = ?"]
        args: list[object] = [run_id]
        if round_idx is not None:
            where.append("round = ?")
            args.append(round_idx)
        if example_id is not None:
            where.append("example_id = ?")
            args.append(example_id)
        sql = f"SELECT * FROM predictions WHERE {' AND '.join(where)} ORDER BY round, example_id"
        return [Prediction.from_row(row) for row in self.db.query(sql, args)]

    # teacher cache ----------------------------------------------------------------------------
    def teacher_models(self, run_id: int) -> list[tuple[str | None, int]]:
        """(cache identity, calls) of the teacher calls behind a run's examples or made by it, by identity."""
        sql = ("SELECT model, COUNT(*) FROM teacher_calls WHERE key IN (SELECT teacher_call FROM examples WHERE run_id = ? "
               "AND teacher_call IS NOT NULL) OR run_id = ? GROUP BY model ORDER BY model")
        return [(model, int(n)) for model, n in self.db.execute(sql, [run_id, run_id]).fetchall()]

    def teacher_call(self, key: str) -> TeacherCall | None:
        """A cached teacher call, or None."""
        rows = list(self.db.query("SELECT * FROM teacher_calls WHERE key = ?", [key]))
        return TeacherCall.from_row(rows[0]) if rows else None

    def teacher_calls(self) -> list[TeacherCall]:
        """Every cached teacher call (a sweep sends them to its Ray workers, so no call is paid twice)."""
        return [TeacherCall.from_row(r) for r in self.db.query("SELECT * FROM teacher_calls ORDER BY key")]

    def save_teacher_call(self, row: dict[str, Any]) -> None:
        """Record a teacher call as soon as it finishes (its own commit: a crash must not pay twice)."""
        self.db.table("teacher_calls").insert({"created": now(), **row}, pk="key", replace=True)
        if self.on_call_saved is not None:
            self.on_call_saved(row)

    # sweeps -----------------------------------------------------------------------------------
    def create_sweep(self, name: str, doc: dict[str, Any], arms: list[dict[str, Any]], seed_sets: int, digest: str,
                     source: str, seed_sizes: list[int] | None = None) -> int:
        """Insert a sweep (its runs are added as they are created) and return its id."""
        ts = now()
        table = self.db.table("sweeps")
        table.insert({"name": name, "created": ts, "updated": ts, "status": RunStatus.CREATED, "doc": json.dumps(doc),
                      "arms": json.dumps(arms), "seed_sets": seed_sets, "digest": digest, "source": source,
                      "host": os.uname().nodename, "seed_sizes": json.dumps(seed_sizes) if seed_sizes else None})
        return int(table.last_pk or 0)

    def sweep(self, sweep_id: int) -> Sweep:
        """One sweep."""
        try:
            row = self.db.table("sweeps").get(sweep_id)
        except sqlite_utils.db.NotFoundError:
            raise StoreError(f"{self.path}: no sweep {sweep_id}") from None
        return Sweep.from_row(row)

    def sweeps(self) -> list[Sweep]:
        """All sweeps, newest first."""
        return [Sweep.from_row(row) for row in self.db.query("SELECT * FROM sweeps ORDER BY id DESC")]

    def sweep_by_digest(self, digest: str) -> Sweep | None:
        """The newest sweep with this plan digest, or None."""
        for row in self.db.query("SELECT * FROM sweeps WHERE digest = ? ORDER BY id DESC LIMIT 1", [digest]):
            return Sweep.from_row(row)
        return None

    def sweep_counts(self) -> dict[int, SweepCounts]:
        """Per sweep id, how many runs it has created and finished."""
        rows = self.db.execute("SELECT sr.sweep_id, COUNT(*), SUM(r.status = 'finished') FROM sweep_runs sr "
                               "JOIN runs r ON r.id = sr.run_id GROUP BY sr.sweep_id")
        return {int(i): SweepCounts(created=int(n or 0), finished=int(done or 0)) for i, n, done in rows}

    def cell_states(self, sweep_id: int) -> list[CellState]:
        """Each cell's run worker and rounds' progress, in the sweep's order (what the sweep screen watches)."""
        rows = self.db.query(
            "SELECT sr.arm, sr.seed_set, r.id, r.status, r.host, r.pid, r.pid_started, r.updated, r.best_round, "
            "(SELECT group_concat(idx || ':' || phase || ':' || COALESCE(val_acc, ''), ',') FROM rounds WHERE run_id = r.id) "
            "AS rounds FROM sweep_runs sr JOIN runs r ON r.id = sr.run_id WHERE sr.sweep_id = ? "
            "ORDER BY sr.seed_set, sr.seed_size, sr.arm", [sweep_id])
        return [CellState.from_row(r) for r in rows]

    def update_sweep(self, sweep_id: int, **fields: Any) -> None:
        """Set columns of a sweep."""
        self.db.table("sweeps").update(sweep_id, {**fields, "updated": now()})

    def sweep_runs(self, sweep_id: int) -> list[SweepRun]:
        """The cells of a sweep, by seed set and seed size."""
        rows = self.db.query("SELECT * FROM sweep_runs WHERE sweep_id = ? ORDER BY seed_set, seed_size, rowid", [sweep_id])
        return [SweepRun.from_row(row) for row in rows]

    def replace_sweep_run(self, sweep_id: int, arm: str, seed_size: int, seed_set: int, run_id: int,
                          overrides: list[str]) -> None:
        """Make another run the (arm, seed size, seed set) cell of a sweep (inside the caller's transaction)."""
        self.db.execute("UPDATE sweep_runs SET run_id = ?, overrides = ? WHERE sweep_id = ? AND arm = ? AND seed_size = ? "
                        "AND seed_set = ?", [run_id, json.dumps(overrides), sweep_id, arm, seed_size, seed_set])

    def add_sweep_run(self, sweep_id: int, arm: str, seed_set: int, run_id: int, overrides: list[str],
                      seed_size: int = 0) -> None:
        """Record that a run is the (arm, seed size, seed set) cell of a sweep (inside the caller's transaction)."""
        self.db.table("sweep_runs").insert({"sweep_id": sweep_id, "arm": arm, "seed_set": seed_set, "run_id": run_id,
                                      "overrides": json.dumps(overrides), "seed_size": seed_size})

    # events and progress ----------------------------------------------------------------------
    def log(self, run_id: int, message: str, *, kind: str = "info", level: str = "info", **data: Any) -> None:
        """Append an event to the run's log."""
        self.db.table("events").insert({"run_id": run_id, "ts": now(), "level": level, "kind": kind,
                                  "message": message, "data": json.dumps(data) if data else None})

    def events(self, run_id: int, after_id: int = 0, limit: int = 500) -> list[Event]:
        """Events of a run after an id (for tailing)."""
        rows = self.db.query("SELECT * FROM events WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?", [run_id, after_id, limit])
        return [Event.from_row(row) for row in rows]

    def last_events(self, run_id: int, limit: int) -> list[Event]:
        """The last `limit` events of a run, oldest first."""
        rows = list(self.db.query("SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT ?", [run_id, limit]))
        return [Event.from_row(row) for row in reversed(rows)]

    def events_with_data(self, run_id: int, kind: str) -> list[Event]:
        """A run's events of one kind that carry data, newest first."""
        rows = self.db.query("SELECT * FROM events WHERE run_id = ? AND kind = ? AND data IS NOT NULL ORDER BY id DESC",
                             [run_id, kind])
        return [Event.from_row(row) for row in rows]

    def set_progress(self, run_id: int, round_idx: int, phase: str, done: int, total: int, message: str = "",
                     started: float | None = None) -> None:
        """Overwrite the run's single progress row (the phase in flight)."""
        t = time.time()
        self.db.table("progress").upsert({"run_id": run_id, "round": round_idx, "phase": phase, "done": done,
                                    "total": total, "started": started if started is not None else t, "updated": t,
                                    "message": message}, pk="run_id")

    def clear_progress(self, run_id: int) -> None:
        """Remove the run's progress row (no phase in flight)."""
        self.db.execute("DELETE FROM progress WHERE run_id = ?", [run_id])

    def progress(self, run_id: int) -> Progress | None:
        """The run's phase in flight, or None."""
        for row in self.db.query("SELECT * FROM progress WHERE run_id = ?", [run_id]):
            return Progress.from_row(row)
        return None

    def checkpoint(self) -> None:
        """Fold the write-ahead log into the database file (before the file is copied alone)."""
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def private_file(path: Path) -> None:
    """Create an empty file readable by its owner only (0600), its missing folders 0700."""
    path = Path(path)
    private_dir(path.parent)
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


def private_dir(path: Path) -> None:
    """Create a folder (and its missing parents) for the owner only (0700); an existing folder is left as it is."""
    path = Path(path)
    if path.is_dir():
        return
    private_dir(path.parent)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    os.chmod(path, 0o700)  # mkdir's mode passes through the umask
