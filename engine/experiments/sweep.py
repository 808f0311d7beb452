"""`l2l sweep`: every (arm, seed set) as an ordinary run under one sweep id; resumable, sharing the teacher cache."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig, SweepConfig, apply_overrides, read_document, resolve
from engine.experiments.arms import Arm, matched_overrides, resolve_arms
from engine.experiments.run_identity import finished_twin
from engine.experiments.sweep_tracking import SweepTracking
from engine.reports.run_report import duration, pct
from engine.run.runs import claim, create_run, effective_status, prepare
from engine.store.db import Store, now
from engine.store.rows import Sweep
from engine.store.status import RunStatus
from models.errors import ConfigError, L2LError


@dataclass(frozen=True)
class SweepPlan:
    """A validated sweep: the base config mapping, the arms in run order, the number of seed sets."""

    name: str
    doc: dict[str, Any]  # the config mapping with its paths made absolute, [sweep] removed
    arms: list[Arm]
    seed_sets: int
    source: str
    warnings: tuple[str, ...] = ()
    seed_sizes: tuple[int, ...] = ()  # empty: the config's own seed size
    ray: str | None = None  # [sweep] ray: the cluster's address (execution only: not in the digest)

    @property
    def digest(self) -> str:
        """What makes two sweeps the same sweep (config, arms, seed sets, seed sizes)."""
        parts: list[Any] = [self.doc, [a.as_row() for a in self.arms], self.seed_sets]
        if self.seed_sizes:  # sweeps without sizes keep the digest they had before sizes existed
            parts.append(list(self.seed_sizes))
        payload = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def seed_set_overrides(seed_set: int, base_seed: int) -> list[str]:
    """Set 0 is the config as written; set s redraws the seed examples (data.seed_draw = s) and trains with seed + s."""
    if seed_set == 0:
        return []
    return [f"data.seed_draw={seed_set}", f"seed={base_seed + seed_set}"]


def run_config(doc: dict[str, Any], source: str, arm: Arm, seed_set: int, extra: list[str],
               seed_size: int = 0) -> tuple[RunConfig, list[str]]:
    """The resolved config of one (arm, seed size, seed set) run and the overrides that made it from the sweep's base
    (seed_size 0: the config's own)."""
    sized = [f"data.seed_size={seed_size}"] if seed_size else []
    overrides = [*sized, *seed_set_overrides(seed_set, int(doc.get("seed", 0))), *arm.overrides, *extra]
    run_doc = json.loads(json.dumps(doc))
    apply_overrides(run_doc, overrides)
    size = f" · n{seed_size}" if seed_size else ""
    run_doc["name"] = f"{doc.get('name', 'run')} · {arm.name}{size} · set {seed_set}"
    where = f"arm {arm.name}, seed size {seed_size}, seed set {seed_set}" if seed_size else f"arm {arm.name}, seed set {seed_set}"
    return resolve(run_doc, f"{source} ({where})"), overrides


def plan_sweep(config: Path, overrides: list[str], arms: list[str] | None, seed_sets: int | None,
               store: Path | None, seed_sizes: list[int] | None = None) -> SweepPlan:
    """Read the config and its [sweep] table and check every (arm, seed set) config and its data before anything runs."""
    doc, source, base_dir = read_document(config, overrides)
    sweep_cfg = _sweep_table(doc.pop("sweep", {}), source)
    if store is not None:  # a path typed on the command line is the working directory's, not the config's
        doc["store"] = str(Path(store).resolve())
    base = resolve(json.loads(json.dumps(doc)), source, base_dir)
    absolute = base.model_dump(mode="json", exclude_unset=False)
    # keep what the user wrote, with paths as resolve() made them absolute
    for section, key in (("data", "seed"), ("data", "validation"), ("data", "test"), ("data", "pool"), ("data", "unlabeled"),
                         ("student", "model"), ("teacher", "model")):
        if doc.get(section, {}).get(key) is not None:
            doc[section][key] = absolute[section][key]
    if base.store is not None:
        doc["store"] = str(base.store)
    arm_list = resolve_arms(sweep_cfg, arms)
    n_sets = seed_sets or sweep_cfg.seed_sets
    sizes = tuple(sorted(set(seed_sizes or sweep_cfg.seed_sizes or [])))
    if any(n < 1 for n in sizes):
        raise ConfigError(f"{source}: sweep.seed_sizes: every size must be at least 1 (got {list(sizes)})")
    checked: set[str] = set()
    seeds_of: dict[int, list[str]] = {}
    for seed_set, size, arm in ((s, n, a) for s in range(n_sets) for n in (sizes or (0,)) for a in arm_list):
        cfg, _ = run_config(doc, source, arm, seed_set, [], size)
        inputs = json.dumps([cfg.task.model_dump(mode="json"), cfg.data.model_dump(mode="json")], sort_keys=True)
        if inputs not in checked:  # data is read once per distinct task + data settings
            prepared = prepare(cfg, check_models=not checked)
            if size == (sizes[0] if sizes else 0):
                seeds_of.setdefault(seed_set, sorted(ex.input for ex in prepared.splits.seed))
            checked.add(inputs)
    same = [s for s in range(1, n_sets) if seeds_of.get(s) == seeds_of.get(0)]
    warnings = (f"seed sets {', '.join(map(str, same))} draw the same seed examples as set 0 (the data has no other "
                "rows to draw; set data.seed_size, or give a larger pool): only the training seed differs",) if same else ()
    return SweepPlan(name=base.name, doc=doc, arms=arm_list, seed_sets=n_sets, source=source, warnings=warnings,
                     seed_sizes=sizes, ray=sweep_cfg.ray)


def _sweep_table(raw: Any, source: str) -> SweepConfig:
    from pydantic import ValidationError

    try:
        return SweepConfig.model_validate(raw)
    except ValidationError as err:
        first = err.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: sweep.{key}: {first['msg']}") from None


def open_sweep(store: Store, plan: SweepPlan) -> tuple[int, bool]:
    """The unfinished sweep with the same plan (continued), or a new one; returns (id, continued)."""
    existing = store.sweep_by_digest(plan.digest)
    if existing is not None and existing.status != RunStatus.FINISHED:
        return existing.id, True
    sweep_id = store.create_sweep(plan.name, plan.doc, [a.as_row() for a in plan.arms], plan.seed_sets, plan.digest,
                                  plan.source, list(plan.seed_sizes) or None)
    return sweep_id, False


Line = Callable[[str], None]


def run_sweep(store: Store, sweep_id: int, *, on_line: Line, on_progress: Callable[[str, int, int], None] | None = None,
              on_log: Callable[[str, str], None] | None = None) -> str:
    """Run every cell of the sweep not finished yet, seed set by seed set; returns the sweep's final status."""
    from engine.run.faults import fault_point
    from engine.run.loop import Loop
    from engine.run.signals import Signals

    claim(store, "sweeps", sweep_id, "sweep")  # one process per sweep, atomically
    sweep = store.sweep(sweep_id)
    arms = [Arm.from_row(a) for a in sweep.arms]
    sizes = sweep.seed_sizes or [0]
    # seed set by seed set (a stopped sweep leaves whole sets), smallest size first, reference arm before matched ones
    cells = [(s, n, arm) for s in range(sweep.seed_sets) for n in sizes for arm in arms]
    # Between runs no run's handler is installed: without this one, SIGINT in a process started in the background
    # (where shells start it ignored) was lost there, and SIGTERM ended the sweep without a word.
    signals = Signals()
    signals.install()
    tracking = SweepTracking(store, sweep, on_line)  # an MLflow parent run when tracking.mlflow is set

    def stopped(why: str) -> str:
        store.update_sweep(sweep_id, status=RunStatus.STOPPED, ended=now())
        tracking.end(RunStatus.STOPPED)
        on_line(f"{why}; continue with `l2l sweep --resume {sweep_id}`")
        return "stopped"

    try:
        if sweep.judge is None and any(uses_teacher(sweep, arm) for arm in arms):
            judge_once(store, sweep, arms[0], on_line)
        for number, (seed_set, size, arm) in enumerate(cells, 1):
            if signals.received:
                return stopped(f"{signals.received} between runs: stopped")
            run_id = _cell_run(store, sweep, seed_set, arm, size)
            label = f"[{number}/{len(cells)}] set {seed_set}{f' · n{size}' if size else ''} · {arm.name}"
            status = effective_status(store.run(run_id))
            tracking.cell(run_id, arm.name, seed_set, size)
            if status != RunStatus.FINISHED:
                started = time.perf_counter()
                echo = (lambda phase, done, total, _l=label: on_progress(f"{_l} · {phase}", done, total)) if on_progress else None
                loop = Loop(store, run_id, on_progress=echo, on_log=on_log)
                status = loop.run()
                signals.received = signals.received or loop.signals.received  # one that came as the run finished
                if status != RunStatus.FINISHED:
                    return stopped(f"{label} · run {run_id} {status}")
                on_line(cell_line(store, label, run_id, time.perf_counter() - started))
            else:
                on_line(cell_line(store, label, run_id, None) + " (already finished)")
            fault_point("sweep", number)
    except BaseException as err:
        store.update_sweep(sweep_id, status=RunStatus.STOPPED if isinstance(err, KeyboardInterrupt) else RunStatus.FAILED,
                           ended=now(), error=None if isinstance(err, KeyboardInterrupt) else
                           str(err) if isinstance(err, L2LError) else f"{type(err).__name__}: {err}")
        tracking.end(RunStatus.STOPPED if isinstance(err, KeyboardInterrupt) else RunStatus.FAILED)
        raise
    finally:
        signals.restore()
    store.update_sweep(sweep_id, status=RunStatus.FINISHED, ended=now())
    tracking.end(RunStatus.FINISHED)
    return "finished"


def uses_teacher(sweep: Sweep, arm: Arm) -> bool:
    """Whether an arm's runs ask the teacher anything (more than one round, with the teacher as source)."""
    cfg, _ = run_config(sweep.doc, sweep.source or "sweep", arm, 0, [])
    return cfg.loop.rounds > 1 and cfg.loop.source == "teacher"


def judge_once(store: Store, sweep: Sweep, arm: Arm, on_line: Line, limit: int = 100) -> None:
    """The teacher's blind accuracy on (up to `limit`) validation rows, as `l2l judge` measures it, stored on the sweep;
    its calls go through the store's teacher cache, so another sweep of the same task and teacher pays nothing."""
    import time

    from engine.experiments.judge import judge_report, judge_requests
    from engine.run.model_slots import open_run_teacher

    cfg, _ = run_config(sweep.doc, sweep.source or "sweep", arm, 0, [])
    prepared = prepare(cfg)
    if not prepared.task.verifies:
        return
    rows = prepared.splits.validation[:limit]
    teacher = open_run_teacher(cfg)
    try:
        identity = teacher.identity()
        requests = judge_requests(prepared.task, cfg, rows, identity, prepared.splits.seed)
        todo = list({r.key: r for r in requests if store.teacher_call(r.key) is None}.values())
        on_line(f"judging the teacher on {len(rows)} validation rows (once per task; {len(requests) - len(todo)} "
                "answered from the cache) …")
        prompts = {r.key: r.messages for r in todo}

        def save(reply: Any) -> None:  # each reply committed as it arrives: a killed sweep never pays it again
            store.save_teacher_call({"key": reply.key, "model": identity, "prompt": json.dumps(prompts[reply.key]),
                                     "response": reply.text, "ok": int(reply.error is None), "tokens_in": reply.tokens_in,
                                     "tokens_out": reply.tokens_out, "seconds": reply.seconds, "error": reply.error,
                                     "run_id": None, "round": None, "purpose": "judge"})

        t0 = time.perf_counter()
        if todo:
            teacher.generate(todo, on_reply=save)
        seconds = time.perf_counter() - t0
    finally:
        teacher.close()
    calls = [store.teacher_call(r.key) for r in requests]
    found = judge_report(prepared.task, rows, [c.reply if c is not None else None for c in calls],
                         "validation", seconds)
    answer, share = found.majority
    record = {"split": "validation", "rows": found.rows, "right": sum(found.right), "agreement": found.agreement,
              "majority": answer, "majority_share": share, "seconds": round(found.seconds, 1), "model": cfg.teacher.model}
    store.update_sweep(sweep.id, judge=json.dumps(record))
    on_line(f"teacher {cfg.teacher.model}: {record['right']} of {found.rows} validation rows right blind "
            f"({found.agreement:.0%}; always {answer!r}: {share:.0%})")


def _cell_run(store: Store, sweep: Sweep, seed_set: int, arm: Arm, seed_size: int = 0) -> int:
    """The run of an (arm, seed size, seed set) cell, created (with its matched settings) the first time it is reached."""
    cells = {(r.arm, r.seed_size or 0, r.seed_set): r.run_id for r in store.sweep_runs(sweep.id)}
    if (arm.name, seed_size, seed_set) in cells:
        return int(cells[(arm.name, seed_size, seed_set)])
    ref_run = cells.get((arm.reference, seed_size, seed_set)) if arm.reference else None
    extra = matched_overrides(arm, store, ref_run)
    cfg, overrides = run_config(sweep.doc, sweep.source or "sweep", arm, seed_set, extra, seed_size)
    prepared = prepare(cfg)
    with store.transaction():
        run_id = finished_twin(store, prepared) or create_run(store, prepared)
        store.add_sweep_run(sweep.id, arm.name, seed_set, run_id, overrides, seed_size)
    return run_id


def cell_line(store: Store, label: str, run_id: int, seconds: float | None) -> str:
    """One line for a finished run: chosen round, validation and test accuracy, kept examples, time."""
    run = store.run(run_id)
    best = store.round(run_id, run.best_round or 0)
    kept = store.count("examples", run_id=run_id, split="synthetic", status="kept")
    took = seconds if seconds is not None else duration(run)
    return (f"{label} · run {run_id} · round {run.best_round} chosen · val {pct(best.val_acc if best else None)} · "
            f"test {pct(best.test_acc if best else None)} · {kept} kept · {_minutes(took)}")


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def sweep_store_path(cfg_store: Path | None) -> Path:
    """The store a sweep writes to (the config's, else the default)."""
    from models.paths import default_store

    return Path(cfg_store) if cfg_store else default_store()
