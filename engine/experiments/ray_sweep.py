"""`l2l sweep CONFIG --ray ADDRESS`: each unfinished cell of a sweep runs as a Ray task into a store of its own on its
worker; the driver, the one writer of the sweep's store, merges each cell's store (engine.experiments.merge) as it comes back.

Workers need llm2llm installed and the config's data and model files at the same paths as the driver (a shared
read-only folder or the same layout on every node); the SQLite store never leaves the driver's disk. A matched arm
(plain's steps, one_shot's budget) is sent once its reference cell is merged, as a local sweep orders them. The
sweep's teacher calls go with each cell, so a call another cell (or an earlier sweep) paid for is not paid again; a
cell's worker also hands each call it pays to a ledger on the driver's node as it is paid, so a cell whose worker died
mid-augment is run again without paying those calls twice."""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from engine.experiments.arms import Arm, matched_overrides
from engine.experiments.merge import merge_stores
from engine.experiments.run_identity import finished_twin
from engine.experiments.sweep import Line, cell_line, judge_once, run_config, uses_teacher
from engine.run.runs import claim, prepare
from engine.store.db import Store, now
from engine.store.rows import Sweep, TeacherCall
from engine.store.status import RunStatus
from models.errors import L2LError

MAX_RETRIES = 2  # a cell whose worker or node died is sent again this many times


def import_ray(asked_by: str = "--ray") -> ModuleType:
    """Ray, or one line naming what asked for it and how to install it (it is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise L2LError(f"{asked_by}: Ray is not installed here; install it with pip install 'llm2llm[ray]'") from None
    return ray


@dataclass(frozen=True)
class CellTiming:
    """Where a Ray cell's wall time went: its run on the worker, and the rest (scheduling, the worker's start, the
    cached calls written there, its store fetched back and merged)."""

    wall: float  # from sending the cell to its merge, on the driver
    run: float  # the run itself, on the worker
    fetch: float  # the store's bytes fetched back after the cell ended
    merge: float
    store_mb: float

    def __str__(self) -> str:
        overhead = max(self.wall - self.run, 0.0)
        return (f"overhead {overhead:.1f} s ({overhead / self.wall:.0%} of the cell; its {self.store_mb:.1f} MB store "
                f"fetched in {self.fetch:.2f} s, merged in {self.merge:.2f} s)")


class CallLedger:
    """A Ray actor on the driver's node: the teacher calls each cell's workers paid in this sweep, handed over as each
    was committed there; a cell sent again after its worker died is answered from its own."""

    def __init__(self) -> None:
        self._calls: dict[str, dict[str, dict[str, Any]]] = {}  # cell → key → call

    def add(self, cell: str, call: dict[str, Any]) -> None:
        """Keep one call a cell paid."""
        self._calls.setdefault(cell, {})[call["key"]] = call

    def calls(self, cell: str) -> list[dict[str, Any]]:
        """The calls a cell paid so far, in every try of it."""
        return list(self._calls.get(cell, {}).values())


def run_cell(sweep: Sweep, cell: dict[str, Any], config_json: str, calls: list[TeacherCall], ledger: Any) -> dict[str, Any]:
    """On a worker: one cell's run to the end in a store of its own (kept on the worker with the run's adapters), the
    sweep row and the cell filed in it, the sweep's teacher calls and the ledger's cached there first, each call it
    pays handed to the ledger; returns that store's bytes, the run's status, where it ran and how many calls it paid."""
    import ray

    from engine.config.schema import RunConfig
    from engine.run.loop import Loop
    from engine.run.runs import create_run
    from models.paths import l2l_home

    cfg = RunConfig.model_validate_json(config_json)
    size = f"-n{cell['seed_size']}" if cell["seed_size"] else ""
    name = f"{cell['arm']}{size}-set{cell['seed_set']}"
    folder = l2l_home() / "ray-cells" / sweep.digest / f"{name}-{uuid.uuid4().hex[:8]}"
    store = Store(folder / "l2l.db")
    try:
        with store.transaction():
            for call in calls:
                store.save_teacher_call(asdict(call))
            known = {call.key for call in calls}
            for row in ray.get(ledger.calls.remote(name)):  # paid by an earlier try of this cell
                if row["key"] not in known:
                    store.save_teacher_call(row)
        cached = store.count("teacher_calls")
        store.on_call_saved = lambda row: ray.get(ledger.add.remote(name, row))  # waited for: a kill loses none
        run_id = create_run(store, prepare(cfg))
        with store.transaction():
            sweep_id = store.create_sweep(sweep.name, sweep.doc, sweep.arms, sweep.seed_sets, sweep.digest,
                                          sweep.source or "sweep", sweep.seed_sizes)
            store.add_sweep_run(sweep_id, cell["arm"], cell["seed_set"], run_id, cell["overrides"], cell["seed_size"])
        began = time.perf_counter()
        try:
            status = Loop(store, run_id).run()
            error = None
        except L2LError as err:  # the run's failure is in its row; the driver reports it
            status, error = RunStatus.FAILED, str(err)
        run_seconds = time.perf_counter() - began
        paid = store.count("teacher_calls") - cached
        store.checkpoint()
    finally:
        store.close()
    return {"store": (folder / "l2l.db").read_bytes(), "status": str(status), "error": error, "host": os.uname().nodename,
            "node": ray.get_runtime_context().get_node_id()[:8], "paid": paid, "folder": str(folder),
            "overrides": cell["overrides"], "run_seconds": run_seconds}


def run_sweep_ray(store: Store, sweep_id: int, address: str, *, on_line: Line) -> str:
    """Run every unfinished cell of the sweep as a Ray task at `address` ('local' starts a Ray of this machine's own),
    merging each as it ends; returns the sweep's final status ('finished'), or raises naming the cells that failed."""
    claim(store, "sweeps", sweep_id, "sweep")
    sweep = store.sweep(sweep_id)
    arms = [Arm.from_row(a) for a in sweep.arms]
    if sweep.judge is None and any(uses_teacher(sweep, arm) for arm in arms):
        judge_once(store, sweep, arms[0], on_line)  # on the driver, into the sweep's own teacher cache
    sizes = sweep.seed_sizes or [0]
    todo = [(s, n, arm) for s in range(sweep.seed_sets) for n in sizes for arm in arms]
    total = len(todo)
    labels = {cell: f"[{i}/{total}] set {cell[0]}{f' · n{cell[1]}' if cell[1] else ''} · {cell[2].name}"
              for i, cell in enumerate(todo, 1)}
    pending: dict[Any, tuple[tuple[int, int, Arm], float]] = {}
    failed: list[str] = []
    ray: ModuleType | None = None
    remote: Any = None
    ledger: Any = None
    cache: tuple[int, Any] | None = None  # (calls in the sweep's cache, those calls in Ray's object store)
    try:
        while todo or pending:
            waiting = len(todo)
            for cell in list(todo) if not failed else []:
                seed_set, size, arm = cell
                cells = _cells(store, sweep_id)
                have = cells.get((arm.name, size, seed_set))
                if have is not None and store.run(have).status == RunStatus.FINISHED:
                    todo.remove(cell)
                    on_line(cell_line(store, labels[cell], have, None) + " (already finished)")
                    continue
                ref_run = cells.get((arm.reference, size, seed_set)) if arm.reference else None
                if arm.reference and (ref_run is None or store.run(ref_run).status != RunStatus.FINISHED):
                    continue  # its reference cell is not merged yet
                cfg, overrides = run_config(sweep.doc, sweep.source or "sweep", arm, seed_set,
                                            matched_overrides(arm, store, ref_run), size)
                todo.remove(cell)
                twin = finished_twin(store, prepare(cfg))
                if twin is not None:
                    _file_cell(store, sweep_id, arm.name, size, seed_set, twin, overrides)
                    on_line(cell_line(store, labels[cell], twin, None) + " (already finished)")
                    continue
                if ray is None:
                    ray, remote, ledger = _connect(address)
                row = {"arm": arm.name, "seed_set": seed_set, "seed_size": size, "overrides": overrides}
                if cache is None or cache[0] != store.count("teacher_calls"):  # put again only when merges added calls
                    cache = (store.count("teacher_calls"), ray.put(store.teacher_calls()))
                pending[remote.remote(sweep, row, cfg.to_json(), cache[1], ledger)] = (cell, time.perf_counter())
            if not pending:
                if failed or not todo:
                    break
                if len(todo) == waiting:
                    raise L2LError(f"sweep {sweep_id}: cells wait on reference cells that never come: "
                                   f"{', '.join(labels[c] for c in todo)}")
                continue
            assert ray is not None
            (ref,), _ = ray.wait(list(pending), num_returns=1)
            cell, started = pending.pop(ref)
            fetch_began = time.perf_counter()
            try:
                result = ray.get(ref)
            except Exception as err:  # the task itself died (worker lost, import error): its cell is not filed
                reason = f"{type(err).__name__}: {' '.join(str(err).split())}"
                failed.append(f"{labels[cell]}: {reason}")
                on_line(f"{labels[cell]} · {reason}")
                continue
            merge_began = time.perf_counter()
            run_id = _merge_cell(store, result)
            timing = CellTiming(wall=time.perf_counter() - started, run=result["run_seconds"],
                                fetch=merge_began - fetch_began, merge=time.perf_counter() - merge_began,
                                store_mb=len(result["store"]) / 1e6)
            if run_id is not None and _cells(store, sweep_id).get((cell[2].name, cell[1], cell[0])) != run_id:
                # the merge files a cell in the newest sweep of this digest: this one, unless an older one is resumed
                _file_cell(store, sweep_id, cell[2].name, cell[1], cell[0], run_id, result["overrides"])
            if result["status"] != RunStatus.FINISHED or run_id is None:
                reason = (f"run {result['status']} on {result['host']}{': ' + result['error'] if result['error'] else ''} "
                          f"(its store there: {result['folder']})")
                failed.append(f"{labels[cell]}: {reason}")
                on_line(f"{labels[cell]} · {reason}")
                continue
            on_line(cell_line(store, labels[cell], run_id, timing.wall)
                    + f" · on {result['host']} (node {result['node']}) · {result['paid']} teacher calls paid · {timing}")
    except BaseException as err:
        if ray is not None:
            for ref in pending:
                ray.cancel(ref, force=True)
        store.update_sweep(sweep_id, status=RunStatus.STOPPED if isinstance(err, KeyboardInterrupt) else RunStatus.FAILED,
                           ended=now(), error=None if isinstance(err, KeyboardInterrupt) else str(err))
        raise
    finally:
        if ray is not None:
            ray.shutdown()
    if failed:
        message = f"sweep {sweep_id}: {len(failed)} cells failed on Ray: " + "; ".join(failed)
        store.update_sweep(sweep_id, status=RunStatus.FAILED, ended=now(), error=message)
        raise L2LError(message + f"; every finished cell is merged: continue with `l2l sweep --resume {sweep_id} --ray ADDRESS`")
    store.update_sweep(sweep_id, status=RunStatus.FINISHED, ended=now())
    return "finished"


def _connect(address: str) -> tuple[ModuleType, Any, Any]:
    """Ray connected (or started, for 'local'), run_cell as a task (one CPU, and one GPU where the cluster has any) and
    the sweep's call ledger, pinned to the driver's node (a worker node that dies does not take it along).
    A task whose worker or node dies is run again (twice at most, wherever Ray has room); a run that fails for a
    reason in its data or config returns its failure and is not retried."""
    ray = import_ray()
    if address == "local":
        ray.init(address="local", include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address=address, log_to_driver=False)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0  # one cell per GPU: student and teacher take turns
    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    ledger = ray.remote(num_cpus=0)(CallLedger).options(scheduling_strategy=here).remote()
    return ray, ray.remote(num_cpus=1, num_gpus=gpus, max_retries=MAX_RETRIES)(run_cell), ledger


def _cells(store: Store, sweep_id: int) -> dict[tuple[str, int, int], int]:
    return {(r.arm, r.seed_size or 0, r.seed_set): int(r.run_id) for r in store.sweep_runs(sweep_id)}


def _file_cell(store: Store, sweep_id: int, arm: str, size: int, seed_set: int, run_id: int, overrides: list[str]) -> None:
    """Make a finished run of the store a cell of the sweep (replacing an unfinished run of that cell)."""
    with store.transaction():
        if (arm, size, seed_set) in _cells(store, sweep_id):
            store.replace_sweep_run(sweep_id, arm, size, seed_set, run_id, overrides)
        else:
            store.add_sweep_run(sweep_id, arm, seed_set, run_id, overrides, size)


def _merge_cell(store: Store, result: dict[str, Any]) -> int | None:
    """Merge a cell's store into the driver's (the cell is filed by the merge); the run's id there, or None when its
    run did not finish (not merged)."""
    with tempfile.TemporaryDirectory(prefix="l2l-cell-") as tmp:
        path = Path(tmp) / "cell.db"
        path.write_bytes(result["store"])
        (report,) = merge_stores([path], store.path)
    done = report.merged or report.skipped
    return done[0][1] if done else None
