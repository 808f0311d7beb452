"""`l2l merge`: copy the runs of stores made elsewhere into one store, ids remapped, lineage, teacher cache and sweep
cells kept, in one transaction on the target."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlite_utils

from engine.experiments.sweep import config_without_paths  # the sweep's notion of "the same experiment"
from engine.run.faults import fault_point
from engine.run.runs import effective_status
from engine.store.db import SCHEMA_VERSION, Store, now
from engine.store.rows import Owned, Run
from engine.store.status import LIVE, RunStatus
from models.errors import StoreError

SPLITS = ("seed", "validation", "test")
RUN_TABLES = ("rounds", "examples", "predictions", "events")  # what belongs to a run besides its row (progress: transient)


@dataclass
class SourceReport:
    """What one source store gave: runs copied (source id → target id), skipped as already there, not merged."""

    path: Path
    merged: list[tuple[int, int, str]] = field(default_factory=list)  # (source id, target id, name)
    skipped: list[tuple[int, int, str]] = field(default_factory=list)  # (source id, the target's run, name)
    not_merged: list[tuple[int, str, str]] = field(default_factory=list)  # (source id, status, name)
    calls_copied: int = 0
    calls_present: int = 0
    sweeps_created: list[tuple[int, int]] = field(default_factory=list)  # (source sweep, target sweep)
    sweeps_matched: list[tuple[int, int]] = field(default_factory=list)
    cells_added: int = 0
    cells_replaced: int = 0  # cells whose run in the target was unfinished, now the finished run merged in
    cells_present: int = 0

    def lines(self) -> list[str]:
        """The report as short lines for the terminal."""
        out = [f"{self.path}: {len(self.merged)} runs merged, {len(self.skipped)} already there, "
               f"{len(self.not_merged)} not merged; teacher calls {self.calls_copied} copied, "
               f"{self.calls_present} already there"]
        out += [f"  run {src} → run {dst} ({name})" for src, dst, name in self.merged]
        out += [f"  run {src} skipped: the same run is run {dst} there ({name})" for src, dst, name in self.skipped]
        out += [f"  run {src} not merged: {status} ({name})" for src, status, name in self.not_merged]
        out += [f"  sweep {src} → sweep {dst} (new)" for src, dst in self.sweeps_created]
        out += [f"  sweep {src} → sweep {dst} (same digest)" for src, dst in self.sweeps_matched]
        if self.sweeps_created or self.sweeps_matched:
            replaced = f", {self.cells_replaced} replaced (their run there was unfinished)" if self.cells_replaced else ""
            out.append(f"  sweep cells: {self.cells_added} added{replaced}, {self.cells_present} already there")
        return out


def merge_stores(sources: list[Path], into: Path, *, unfinished: bool = False) -> list[SourceReport]:
    """Merge every source's finished runs (with `unfinished`: every run whose worker is not live) into `into`, in one
    transaction; every source is checked before the target is opened, and no source is written."""
    into = Path(into)
    checked = [_check_source(Path(p), into) for p in sources]
    target = Store(into)
    try:
        reports: list[SourceReport] = []
        with target.transaction():
            merger = _Merger(target)
            for path, version in checked:
                with _opened(path, version) as db:
                    reports.append(merger.merge(path, db, unfinished=unfinished))
            merger.finish_sweeps()
        return reports
    finally:
        target.close()


def _check_source(path: Path, into: Path) -> tuple[Path, int]:
    """A source as (path, schema version), or StoreError naming the file: missing, the target itself, not a store,
    newer than this code."""
    if not path.is_file():
        raise StoreError(f"{path}: no store here")
    if into.exists() and os.path.samefile(path, into):
        raise StoreError(f"{path}: is the target store itself (--into {into})")
    try:
        with _read_only(path) as conn:
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'schema_version'").fetchone() is None:
                raise StoreError(f"{path}: not an llm2llm store (no schema_version table)")
            version = int(conn.execute("SELECT MAX(version) FROM schema_version").fetchone()[0] or 0)
    except sqlite3.DatabaseError as err:
        raise StoreError(f"{path}: not an llm2llm store ({err})") from None
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: store schema v{version} is newer than this llm2llm (v{SCHEMA_VERSION}); upgrade llm2llm")
    return path, version


@contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to a store file (a merge never writes to its sources)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
    try:
        yield conn
    finally:
        conn.close()


@contextmanager
def _opened(path: Path, version: int) -> Iterator[sqlite_utils.Database]:
    """The source for reading, inside one snapshot; an older schema is migrated in a temporary copy, not in place."""
    if version == SCHEMA_VERSION:
        with _read_only(path) as conn:
            conn.execute("BEGIN")  # one committed state even while a worker writes to the source
            yield sqlite_utils.Database(conn)
        return
    with tempfile.TemporaryDirectory(prefix="l2l-merge-") as tmp, _read_only(path) as conn:
        copy = Path(tmp) / "source.db"
        dest = sqlite3.connect(str(copy))
        conn.backup(dest)
        dest.close()
        store = Store(copy, create=False)  # migrates the copy to this code's schema
        try:
            yield store.db
        finally:
            store.close()


def _rows(db: sqlite_utils.Database, sql: str, args: list[Any] | tuple[Any, ...] = ()) -> list[dict[str, Any]]:
    return [dict(row) for row in db.query(sql, args)]


def fingerprint(config: dict[str, Any], notes: dict[str, Any], hashes: dict[str, list[str]], status: str) -> str:
    """What makes two runs the same run: the resolved config without paths (with the data notes that name the
    unlabeled pool's digest), the sorted content hashes of the seed, validation and test examples, and the status."""
    payload = json.dumps([config_without_paths(config, notes), {s: sorted(hashes.get(s, [])) for s in SPLITS}, status],
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _run_fingerprint(db: sqlite_utils.Database, run: dict[str, Any]) -> str:
    hashes: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split, digest in db.execute("SELECT split, content_hash FROM examples WHERE run_id = ? AND split IN (?, ?, ?)",
                                    [run["id"], *SPLITS]).fetchall():
        hashes[split].append(digest)
    typed = Run.from_row(run)
    return fingerprint(typed.config, typed.splits, hashes, typed.status)


def _live(row: Owned) -> bool:
    """Whether a run's (or sweep's) worker may still be writing it: alive on this host, or on another host."""
    return effective_status(row) in LIVE


class _Merger:
    """One merge into one target, inside the caller's transaction."""

    def __init__(self, target: Store) -> None:
        self.target = target
        self.db = target.db
        self.columns = {t: set(self.db.table(t).columns_dict) for t in ("runs", *RUN_TABLES, "teacher_calls", "sweeps",
                                                                        "sweep_runs")}
        self._prints: dict[str, dict[str, int]] = {}  # run name → fingerprint → target run id (read lazily)
        self.touched_sweeps: set[int] = set()
        self.copied = 0

    def _fingerprints(self, name: str) -> dict[str, int]:
        if name not in self._prints:
            runs = _rows(self.db, "SELECT * FROM runs WHERE name = ? ORDER BY id", [name])
            self._prints[name] = {}
            for run in runs:
                self._prints[name].setdefault(_run_fingerprint(self.db, run), int(run["id"]))
        return self._prints[name]

    def merge(self, path: Path, src: sqlite_utils.Database, *, unfinished: bool) -> SourceReport:
        """Copy one source's runs, their teacher calls and their sweep cells."""
        report = SourceReport(path)
        mapped: dict[int, int] = {}  # source run id → target run id (new or already there)
        new: dict[int, int] = {}
        for run in _rows(src, "SELECT * FROM runs ORDER BY id"):  # raw rows: copied column by column as they are
            src_id = int(run["id"])
            typed = Run.from_row(run)
            if (typed.status != RunStatus.FINISHED and not unfinished) or _live(typed):
                report.not_merged.append((src_id, effective_status(typed), typed.name))
                continue
            prints = self._fingerprints(run["name"])
            digest = _run_fingerprint(src, run)
            if digest in prints:
                mapped[src_id] = prints[digest]
                report.skipped.append((src_id, prints[digest], run["name"]))
                continue
            dst_id = self._copy_run(src, run)
            prints[digest] = mapped[src_id] = new[src_id] = dst_id
            report.merged.append((src_id, dst_id, run["name"]))
            self.copied += 1
            fault_point("merge", self.copied)  # runs copied, the transaction not committed
        self._copy_calls(src, new, report)
        self._copy_sweeps(src, mapped, report)
        return report

    def _insert(self, table: str, rows: list[dict[str, Any]]) -> None:
        if not rows:
            return
        names = [c for c in rows[0] if c in self.columns[table]]
        sql = f"INSERT INTO [{table}] ({', '.join(f'[{c}]' for c in names)}) VALUES ({', '.join('?' * len(names))})"
        self.db.conn.executemany(sql, ([row.get(c) for c in names] for row in rows))

    def _copy_run(self, src: sqlite_utils.Database, run: dict[str, Any]) -> int:
        """Insert the run under a new id with its rounds, examples (parents remapped), predictions and events."""
        row = {k: v for k, v in run.items() if k != "id"}
        self._insert("runs", [row])
        dst = int(self.db.execute("SELECT last_insert_rowid()").fetchone()[0])
        src_id = int(run["id"])
        self._insert("rounds", [{**r, "run_id": dst} for r in _rows(src, "SELECT * FROM rounds WHERE run_id = ?", [src_id])])
        examples = _rows(src, "SELECT * FROM examples WHERE run_id = ? ORDER BY id", [src_id])
        # explicit ids, one block above the target's highest: parents are remapped whatever order they were written in
        base = int(self.db.execute("SELECT COALESCE(MAX(id), 0) FROM examples").fetchone()[0]) + 1
        ids = {int(e["id"]): base + i for i, e in enumerate(examples)}
        self._insert("examples", [{**e, "id": ids[int(e["id"])], "run_id": dst,
                                   "parent_id": None if e["parent_id"] is None else ids.get(int(e["parent_id"]))}
                                  for e in examples])
        self._insert("predictions", [{**p, "run_id": dst, "example_id": ids.get(int(p["example_id"]))}
                                     for p in _rows(src, "SELECT * FROM predictions WHERE run_id = ?", [src_id])])
        self._insert("events", [{k: v for k, v in e.items() if k != "id"} | {"run_id": dst}
                                for e in _rows(src, "SELECT * FROM events WHERE run_id = ? ORDER BY id", [src_id])])
        return dst

    def _copy_calls(self, src: sqlite_utils.Database, new: dict[int, int], report: SourceReport) -> None:
        """The teacher calls the copied runs made or were answered from, and the calls no run owns (a sweep's judge of
        the teacher): the shared cache; a key already in the target is not copied. A call's run is remapped when that
        run was copied, else left empty (it was made by a run not copied)."""
        if not new:
            return
        ids = json.dumps(list(new))
        rows = _rows(src, "SELECT * FROM teacher_calls WHERE run_id IN (SELECT value FROM json_each(?)) OR key IN "
                          "(SELECT teacher_call FROM examples WHERE run_id IN (SELECT value FROM json_each(?)) "
                          "AND teacher_call IS NOT NULL) OR run_id IS NULL ORDER BY rowid", [ids, ids])
        present = {r[0] for r in self.db.execute(
            "SELECT key FROM teacher_calls WHERE key IN (SELECT value FROM json_each(?))",
            [json.dumps([r["key"] for r in rows])]).fetchall()}
        fresh = [{**r, "run_id": new.get(int(r["run_id"])) if r["run_id"] is not None else None}
                 for r in rows if r["key"] not in present]
        self._insert("teacher_calls", fresh)
        report.calls_copied += len(fresh)
        report.calls_present += len(rows) - len(fresh)

    def _copy_sweeps(self, src: sqlite_utils.Database, mapped: dict[int, int], report: SourceReport) -> None:
        """Each source sweep with a merged run: the target's sweep of the same digest, else a new one; its cells whose
        run is in the target are added unless the target's sweep has that cell already (with a finished run)."""
        for sweep in _rows(src, "SELECT * FROM sweeps ORDER BY id"):
            cells = [c for c in _rows(src, "SELECT * FROM sweep_runs WHERE sweep_id = ? ORDER BY rowid", [sweep["id"]])
                     if int(c["run_id"]) in mapped]
            if not cells:
                continue
            existing = self.target.sweep_by_digest(sweep["digest"])
            if existing is not None:
                dst = existing.id
                report.sweeps_matched.append((int(sweep["id"]), dst))
                if existing.judge is None and sweep.get("judge") is not None:
                    self.db.execute("UPDATE sweeps SET judge = ? WHERE id = ?", [sweep["judge"], dst])
            else:
                row = {k: v for k, v in sweep.items() if k != "id"}
                if row["status"] in LIVE:  # its worker (if any) writes to the source, never to this store
                    row.update(status=RunStatus.STOPPED, pid=None, pid_started=None)
                self._insert("sweeps", [row])
                dst = int(self.db.execute("SELECT last_insert_rowid()").fetchone()[0])
                report.sweeps_created.append((int(sweep["id"]), dst))
            have = {(c[0], c[1] or 0, c[2]): c[3] for c in self.db.execute(
                "SELECT c.arm, c.seed_size, c.seed_set, r.status FROM sweep_runs c LEFT JOIN runs r ON r.id = c.run_id "
                "WHERE c.sweep_id = ?", [dst]).fetchall()}
            for cell in cells:
                key = (cell["arm"], cell["seed_size"] or 0, cell["seed_set"])
                run_id = mapped[int(cell["run_id"])]
                if key not in have:
                    self._insert("sweep_runs", [{**cell, "sweep_id": dst, "run_id": run_id}])
                    report.cells_added += 1
                elif have[key] != RunStatus.FINISHED and self._finished(run_id):
                    # the target's run of this cell never finished (a killed sweep); the finished one merged in is the
                    # cell's result now, the unfinished run stays in the store outside the sweep
                    self.db.execute("UPDATE sweep_runs SET run_id = ?, overrides = ? WHERE sweep_id = ? AND arm = ? "
                                    "AND seed_size = ? AND seed_set = ?", [run_id, cell["overrides"], dst, *key])
                    report.cells_replaced += 1
                else:
                    report.cells_present += 1
            self.touched_sweeps.add(dst)

    def _finished(self, run_id: int) -> bool:
        row = self.db.execute("SELECT status FROM runs WHERE id = ?", [run_id]).fetchone()
        return row is not None and row[0] == RunStatus.FINISHED

    def finish_sweeps(self) -> None:
        """A target sweep that is not running and now has a finished run in every cell is finished."""
        for sweep_id in sorted(self.touched_sweeps):
            sweep = self.target.sweep(sweep_id)
            if sweep.status == RunStatus.FINISHED or _live(sweep):
                continue
            wanted = len(sweep.arms) * len(sweep.seed_sizes or [0]) * sweep.seed_sets
            done = self.db.execute("SELECT COUNT(*) FROM sweep_runs c JOIN runs r ON r.id = c.run_id "
                                   "WHERE c.sweep_id = ? AND r.status = ?", [sweep_id, RunStatus.FINISHED]).fetchone()[0]
            if done >= wanted:
                self.db.execute("UPDATE sweeps SET status = ?, ended = ?, updated = ? WHERE id = ?",
                                [RunStatus.FINISHED, now(), now(), sweep_id])
