"""`l2l merge`: copy the runs of stores made elsewhere into one store, ids remapped, lineage, teacher cache and sweep
cells kept, in one transaction on the target."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from engine.experiments.run_identity import fingerprint
from engine.run.faults import fault_point
from engine.run.runs import effective_status
from engine.store.db import Store
from engine.store.rows import Owned, Run
from engine.store.status import LIVE, RunStatus
from engine.store.transfer import Row, StoredRows, TargetRows, open_source, source_version
from models.errors import StoreError


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
                with open_source(path, version) as src:
                    reports.append(merger.merge(path, src, unfinished=unfinished))
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
    return path, source_version(path)


def _run_fingerprint(rows: StoredRows, run: Row) -> str:
    typed = Run.from_row(run)
    return fingerprint(typed.config, typed.splits, rows.split_hashes(typed.id), typed.status,
                       typed.versions.get("prompts"))


def _live(row: Owned) -> bool:
    """Whether a run's (or sweep's) worker may still be writing it: alive on this host, or on another host."""
    return effective_status(row) in LIVE


class _Merger:
    """One merge into one target, inside the caller's transaction."""

    def __init__(self, target: Store) -> None:
        self.target = target
        self.rows = TargetRows(target)
        self._prints: dict[str, dict[str, int]] = {}  # run name → fingerprint → target run id (read lazily)
        self.touched_sweeps: set[int] = set()
        self.copied = 0

    def _fingerprints(self, name: str) -> dict[str, int]:
        if name not in self._prints:
            self._prints[name] = {}
            for run in self.rows.runs(name):
                self._prints[name].setdefault(_run_fingerprint(self.rows, run), int(run["id"]))
        return self._prints[name]

    def merge(self, path: Path, src: StoredRows, *, unfinished: bool) -> SourceReport:
        """Copy one source's runs, their teacher calls and their sweep cells."""
        report = SourceReport(path)
        mapped: dict[int, int] = {}  # source run id → target run id (new or already there)
        new: dict[int, int] = {}
        for run in src.runs():  # raw rows: copied column by column as they are
            src_id = int(run["id"])
            typed = Run.from_row(run)
            if (typed.status != RunStatus.FINISHED and not unfinished) or _live(typed):
                report.not_merged.append((src_id, effective_status(typed), typed.name))
                continue
            prints = self._fingerprints(typed.name)
            digest = _run_fingerprint(src, run)
            if digest in prints:
                mapped[src_id] = prints[digest]
                report.skipped.append((src_id, prints[digest], typed.name))
                continue
            dst_id = self.rows.copy_run(src, run)
            prints[digest] = mapped[src_id] = new[src_id] = dst_id
            report.merged.append((src_id, dst_id, typed.name))
            self.copied += 1
            fault_point("merge", self.copied)  # runs copied, the transaction not committed
        self._copy_calls(src, new, report)
        self._copy_sweeps(src, mapped, report)
        return report

    def _copy_calls(self, src: StoredRows, new: dict[int, int], report: SourceReport) -> None:
        """The teacher calls the copied runs made or were answered from, and the calls no run owns (a sweep's judge of
        the teacher): the shared cache; a key already in the target is not copied. A call's run is remapped when that
        run was copied, else left empty (it was made by a run not copied)."""
        if not new:
            return
        rows = src.calls_for(list(new))
        present = self.rows.call_keys([r["key"] for r in rows])
        fresh = [{**r, "run_id": new.get(int(r["run_id"])) if r["run_id"] is not None else None}
                 for r in rows if r["key"] not in present]
        self.rows.insert_calls(fresh)
        report.calls_copied += len(fresh)
        report.calls_present += len(rows) - len(fresh)

    def _copy_sweeps(self, src: StoredRows, mapped: dict[int, int], report: SourceReport) -> None:
        """Each source sweep with a merged run: the target's sweep of the same digest, else a new one; its cells whose
        run is in the target are added unless the target's sweep has that cell already (with a finished run)."""
        for sweep in src.sweeps():
            cells = [c for c in src.cells(int(sweep["id"])) if int(c["run_id"]) in mapped]
            if not cells:
                continue
            existing = self.target.sweep_by_digest(sweep["digest"])
            if existing is not None:
                dst = existing.id
                report.sweeps_matched.append((int(sweep["id"]), dst))
                if existing.judge is None and sweep.get("judge") is not None:
                    self.target.update_sweep(dst, judge=sweep["judge"])
            else:
                row = dict(sweep)
                if row["status"] in LIVE:  # its worker (if any) writes to the source, never to this store
                    row.update(status=RunStatus.STOPPED, pid=None, pid_started=None)
                dst = self.rows.insert_sweep(row)
                report.sweeps_created.append((int(sweep["id"]), dst))
            have = self.rows.cell_statuses(dst)
            for cell in cells:
                key = (cell["arm"], cell["seed_size"] or 0, cell["seed_set"])
                run_id = mapped[int(cell["run_id"])]
                if key not in have:
                    self.rows.insert_cell({**cell, "sweep_id": dst, "run_id": run_id})
                    report.cells_added += 1
                elif have[key] != RunStatus.FINISHED and self.target.run(run_id).status == RunStatus.FINISHED:
                    # the target's run of this cell never finished (a killed sweep); the finished one merged in is the
                    # cell's result now, the unfinished run stays in the store outside the sweep
                    self.target.replace_sweep_run(dst, *key, run_id, json.loads(cell["overrides"] or "[]"))
                    report.cells_replaced += 1
                else:
                    report.cells_present += 1
            self.touched_sweeps.add(dst)

    def finish_sweeps(self) -> None:
        """A target sweep that is not running and now has a finished run in every cell is finished."""
        for sweep_id in sorted(self.touched_sweeps):
            sweep = self.target.sweep(sweep_id)
            if sweep.status == RunStatus.FINISHED or _live(sweep):
                continue
            if self.rows.finished_cells(sweep_id) >= len(sweep.arms) * len(sweep.seed_sizes or [0]) * sweep.seed_sets:
                self.rows.finish_sweep(sweep_id)
