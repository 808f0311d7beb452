"""Run lifecycle: validate everything, create a run in one transaction, stop, status, liveness."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

from engine.status import LIVE, RunStatus
from engine.config import RunConfig
from engine.data import Splits, load_splits
from engine.example_rows import example_row
from engine.store import Store
from engine.tasks.base import Task
from engine.tasks.registry import make_task


@dataclass
class Prepared:
    """A config checked against its data and models; nothing written yet."""

    cfg: RunConfig
    task: Task
    splits: Splits


def prepare(cfg: RunConfig, *, check_models: bool = True) -> Prepared:
    """Build the task, load and validate every data row, check the models exist; raises L2LError."""
    task = make_task(cfg.task)
    splits = load_splits(cfg, task)
    if check_models:
        from models.catalog import resolve_model

        resolve_model(cfg.student.model)
        if cfg.teacher.backend == "llama_cpp":
            resolve_model(cfg.teacher.model)
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


def create_run(store: Store, prepared: Prepared, workdir: Path | None = None) -> int:
    """Insert the run, its examples and round 0 in one transaction; returns the run id."""
    from models.device import device_info

    cfg = prepared.cfg
    with store.transaction():
        run_id = store.create_run(cfg.name, cfg.to_json(), cfg.digest(), cfg.seed, library_versions(), device_info(),
                                  {**prepared.splits.notes})
        folder = workdir or store.path.parent / "runs" / str(run_id)
        store.update_run(run_id, splits={**prepared.splits.notes, "workdir": str(folder)})
        rows = [example_row(run_id, split, ex)
                for split, examples in (("seed", prepared.splits.seed), ("validation", prepared.splits.validation),
                                        ("test", prepared.splits.test))
                for ex in examples]
        store.insert_examples(rows)
        store.upsert_round(run_id, 0, phase="train")
        store.log(run_id, f"run created: {len(prepared.splits.seed)} seed, {len(prepared.splits.validation)} validation, "
                          f"{len(prepared.splits.test)} test examples", kind="status")
    return run_id


def request_stop(store: Store, run_id: int) -> None:
    """Ask the worker to exit after the phase in flight commits."""
    store.update_run(run_id, stop_requested=1)
    if store.run(run_id)["status"] == RunStatus.RUNNING:
        store.update_run(run_id, status=RunStatus.STOPPING)
    store.log(run_id, "stop requested", kind="status")


def pid_alive(pid: int | None) -> bool:
    """Whether a worker process with this pid still runs (and is not a zombie)."""
    if not pid:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def effective_status(run: dict[str, Any]) -> str:
    """The stored status, except a 'running' run whose worker died is 'crashed'."""
    status = run["status"]
    if status in LIVE and run.get("host") == os.uname().nodename and not pid_alive(run.get("pid")):
        return "crashed"
    return status
