"""Run lifecycle: validate everything, create a run in one transaction, stop, status, liveness."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import psutil

from engine.config.schema import RunConfig
from engine.data.example_rows import example_row
from engine.data.load import Splits, load_splits
from engine.store.db import Store, run_folder
from engine.store.rows import Owned
from engine.store.status import LIVE, RunStatus
from engine.tasks.base import Task
from engine.tasks.registry import make_task
from models.errors import StoreError

# psutil derives a process's start time from boot time and clock ticks: the same process always gives the same value
_SAME_START = 0.05


@dataclass
class Prepared:
    """A config checked against its data and models; nothing written yet."""

    cfg: RunConfig
    task: Task
    splits: Splits

    @property
    def warnings(self) -> list[str]:
        """What the data check noticed but allowed (e.g. rows of the seed file also in validation)."""
        return list(self.splits.notes.get("warnings") or [])


def prepare(cfg: RunConfig, *, check_models: bool = True) -> Prepared:
    """Build the task, load and validate every data row, check the model files from their headers; raises L2LError."""
    task = make_task(cfg.task)
    splits = load_splits(cfg, task)
    if cfg.loop.source == "pool":  # a bad pool is refused before anything is written
        from engine.augment.unlabeled import load_unlabeled

        pool = load_unlabeled(cfg, task, [ex.input for part in (splits.seed, splits.validation, splits.test) for ex in part],
                              [ex.input for ex in splits.seed])
        splits.notes["unlabeled"] = {"file": str(pool.path), "digest": pool.digest, "usable": len(pool.texts),
                                     "dropped_as_split": pool.dropped_as_split, "dropped_repeats": pool.dropped_repeats,
                                     "dropped_language": pool.dropped_language}
        if pool.notes:
            splits.notes["warnings"] = [*splits.notes.get("warnings", []), *pool.notes]
    if check_models:
        from models.catalog import resolve_model
        from models.model_check import check_model

        check_model(resolve_model(cfg.student.model), "student", cfg.lora.target_modules)
        if cfg.teacher.backend == "llama_cpp":
            check_model(resolve_model(cfg.teacher.model), "teacher")
    return Prepared(cfg=cfg, task=task, splits=splits)


def library_versions() -> dict[str, str]:
    """Versions of the libraries that decide a run's numbers."""
    out = {}
    for name in ("llm2llm", "torch", "transformers", "peft", "bitsandbytes", "llama_cpp_python", "datasets", "sqlite-utils"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "missing"
    return out


def run_versions() -> dict[str, str]:
    """What produced a run besides its config: the libraries' versions and the teacher prompts' digest."""
    from engine.tasks.prompt_templates import prompts_digest

    return {**library_versions(), "prompts": prompts_digest()}


def create_run(store: Store, prepared: Prepared, workdir: Path | None = None) -> int:
    """Insert the run, its examples and round 0 in one transaction; returns the run id."""
    from models.device import device_info

    cfg = prepared.cfg
    with store.transaction():
        run_id = store.create_run(cfg.name, cfg.to_json(), cfg.digest(), cfg.seed, run_versions(), device_info(),
                                  {**prepared.splits.notes})
        folder = workdir or run_folder(store.path, run_id)
        store.update_run(run_id, splits={**prepared.splits.notes, "workdir": str(folder)})
        rows = [example_row(run_id, split, ex)
                for split, examples in (("seed", prepared.splits.seed), ("validation", prepared.splits.validation),
                                        ("test", prepared.splits.test))
                for ex in examples]
        store.insert_examples(rows)
        store.upsert_round(run_id, 0, phase="train")
        store.log(run_id, f"run created: {len(prepared.splits.seed)} seed, {len(prepared.splits.validation)} validation, "
                          f"{len(prepared.splits.test)} test examples", kind="status")
        for warning in prepared.warnings:
            store.log(run_id, warning, kind="status", level="warning")
    return run_id


def request_stop(store: Store, run_id: int) -> None:
    """Ask the worker to exit after the phase in flight commits."""
    store.update_run(run_id, stop_requested=1)
    if store.run(run_id).status == RunStatus.RUNNING:
        store.update_run(run_id, status=RunStatus.STOPPING)
    store.log(run_id, "stop requested", kind="status")


def process_started(pid: int) -> float | None:
    """When a process started (seconds since the epoch), or None when there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def pid_alive(pid: int | None, started: float | None = None) -> bool:
    """Whether the process with this pid still runs (not a zombie) and, when `started` is given, is the one that
    started then (a pid reused by an unrelated process is not the worker)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < _SAME_START
    except psutil.Error:
        return False


def owner_alive(row: Owned) -> bool:
    """Whether the worker recorded on a run or sweep still runs (a worker on another host counts as alive)."""
    if row.host != os.uname().nodename:
        return True
    return pid_alive(row.pid, row.pid_started)


def effective_status(run: Owned) -> str:
    """The stored status, except a 'running' run whose worker died (or whose pid now names another process) is 'crashed'."""
    status = run.status
    if status in LIVE and run.host == os.uname().nodename and not owner_alive(run):
        return "crashed"
    return status


def claim(store: Store, table: str, row_id: int, what: str) -> None:
    """Make this process the one worker of a run or sweep, atomically (BEGIN IMMEDIATE): refused, naming the owner's
    pid, while another live process holds it; a claim left by a dead process (or a reused pid) is taken over."""
    me = os.getpid()
    with store.transaction():
        try:
            row = store.owner(table, row_id)
        except StoreError:
            raise StoreError(f"{store.path}: no {what} {row_id}") from None
        if row.status in LIVE and row.pid != me and owner_alive(row):
            where = "" if row.host == os.uname().nodename else f" on {row.host}"
            raise StoreError(f"{what} {row_id} is {row.status} in pid {row.pid}{where}; only one worker may run it "
                             f"(stop it with `l2l stop {row_id}`)" if what == "run" else
                             f"{what} {row_id} is {row.status} in pid {row.pid}{where}; it continues by itself")
        store.set_owner(table, row_id, me, process_started(me), os.uname().nodename)
