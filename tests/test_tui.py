"""The app driven with Textual's Pilot against real stores made by real tiny runs (and real worker processes)."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, Select
from textual.worker import WorkerCancelled, WorkerFailed

from engine.config.schema import RunConfig, load_config
from engine.run.runs import create_run, effective_status, pid_alive, prepare
from engine.store.db import Store
from l2l_tui.app import L2LApp
from l2l_tui.screens.confirm import ConfirmScreen
from l2l_tui.screens.dashboard import DashboardScreen
from l2l_tui.screens.dry_run import DryRunScreen
from l2l_tui.screens.examples import ExamplesScreen
from l2l_tui.screens.file_picker import PathPicker
from l2l_tui.screens.help import HelpScreen
from l2l_tui.screens.lineage import LineageScreen
from l2l_tui.screens.new_run import NewRunScreen
from l2l_tui.screens.runs import RunsScreen
from l2l_tui.watch import EventsArrived, ProgressChanged, RoundsChanged, RunChanged, StoreWatcher
from l2l_tui.widgets.config_form import ConfigForm, to_text
from l2l_tui.widgets.lineage import LineageTree
from l2l_tui.widgets.log_pane import LogPane
from l2l_tui.widgets.round_table import RoundTable
from l2l_tui.widgets.runs_table import RunsTable
from l2l_tui.widgets.teacher_stream import TeacherStream

SIZE = (120, 40)
ScreenT = TypeVar("ScreenT")


def async_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test on a fresh event loop (no pytest async plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return run
WAIT = 120.0  # an upper bound for waits on real processes, not a timing assertion


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Let the app run until condition() holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        await pilot.pause(0.05)


async def settle(pilot: Pilot[Any]) -> None:
    """Wait for the app's worker threads and the messages they posted."""
    for worker in list(pilot.app.workers):
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):  # an exclusive worker replaced by a newer one
            pass
    await pilot.pause()


def cell(table: Any, row: str, column: str) -> str:
    """Plain text of one table cell."""
    return str(table.get_cell(row, column))


async def open_runs(pilot: Pilot[Any]) -> RunsScreen:
    screen = pilot.app.screen
    assert isinstance(screen, RunsScreen)
    await until(pilot, lambda: screen.loaded, "the runs list")
    return screen


async def press_into(pilot: Pilot[Any], key: str, kind: type[ScreenT], what: str) -> ScreenT:
    """Press a key that opens a screen of this kind, and wait until the screen has loaded."""
    await pilot.press(key)
    screen = pilot.app.screen
    assert isinstance(screen, kind)
    await until(pilot, lambda: bool(getattr(screen, "loaded", True)), what)
    return screen


# runs screen and dashboard ----------------------------------------------------------------------------------
@async_test
async def test_runs_screen_lists_the_run_and_the_dashboard_shows_its_rounds(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    store = Store(path, create=False)
    rounds = store.rounds(run_id)
    teacher_events = [e for e in store.events(run_id, limit=10_000) if e.kind == "teacher"]
    other_events = [e for e in store.events(run_id, limit=10_000) if e.kind != "teacher"]
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot)
        table = runs.query_one(RunsTable)
        assert table.row_count == 1
        assert cell(table, str(run_id), "status") == "finished"
        assert cell(table, str(run_id), "rounds") == f"{len(rounds)}/2"
        dash = await press_into(pilot, "enter", DashboardScreen, "the dashboard")
        round_table = dash.query_one(RoundTable)
        assert round_table.row_count == len(rounds) == 2
        best = store.run(run_id).best_round
        assert cell(round_table, str(best), "round").startswith(f"{best}*")
        assert cell(round_table, "0", "round").endswith("base")
        assert cell(round_table, "0", "misses") == str(rounds[0].misses)
        assert dash.query_one(TeacherStream).count == len(teacher_events) > 0
        assert len(dash.query_one(LogPane).lines) >= len(other_events)
        assert "finished" in str(dash.query_one("#phase-text").render())
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


@async_test
async def test_status_filter_hides_other_runs(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot)
        table = runs.query_one(RunsTable)
        runs.query_one("#status-filter", Select).value = "crashed"
        await pilot.pause()
        assert table.row_count == 0
        runs.query_one("#status-filter", Select).value = "finished"
        await pilot.pause()
        assert table.row_count == 1


# example browser and lineage ----------------------------------------------------------------------------------
@async_test
async def test_filter_examples(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    store = Store(path, create=False)
    every = store.examples(run_id)
    synthetic = store.examples(run_id, split="synthetic")
    rejected = [e for e in synthetic if e.status == "rejected"]
    last = store.rounds(run_id)[-1].idx
    wrong_seed_last = [p for p in store.predictions(run_id, last) if p.split == "seed" and not p.correct]
    wrong_seed_0 = [p for p in store.predictions(run_id, 0) if p.split == "seed" and not p.correct]
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        screen = await press_into(pilot, "x", ExamplesScreen, "the examples")
        assert screen.total == len(every)

        async def pick(name: str, value: Any) -> None:
            screen.query_one(f"#flt-{name}", Select).value = value
            await pilot.pause()
            await until(pilot, lambda: screen.loaded, f"examples filtered by {name}")
            await settle(pilot)

        await pick("split", "synthetic")
        assert screen.total == len(synthetic) > 0
        if rejected:
            await pick("status", "rejected")
            assert screen.total == len(rejected)
            reason = rejected[0].reason
            await pick("reason", reason)
            assert screen.total == sum(1 for e in rejected if e.reason == reason)
        await pilot.press("k")  # clear filters
        await until(pilot, lambda: screen.loaded and screen.total == len(every), "cleared filters")
        await pilot.press("w")  # seed misses in the last evaluated round
        await pilot.pause()
        await until(pilot, lambda: screen.loaded and screen.flt.result == "wrong", "misses filter")
        await settle(pilot)
        assert screen.total == len(wrong_seed_last)
        await pick("eval_round", 0)
        assert screen.total == len(wrong_seed_0) == store.round(run_id, 0).misses
        screen.query_one("#flt-text", Input).value = "zzz-no-such-text"
        await pilot.press("slash")
        await pilot.press("enter")
        await until(pilot, lambda: screen.loaded and screen.flt.text is not None, "text search")
        await settle(pilot)
        assert screen.total == 0


@async_test
async def test_follow_a_lineage_from_a_synthetic_example_to_its_seed(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    store = Store(path, create=False)
    child = store.examples(run_id, split="synthetic")[0]
    parent = store.example(child.parent_id)
    siblings = [e for e in store.examples(run_id, split="synthetic") if e.parent_id == parent.id]
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        screen = await press_into(pilot, "x", ExamplesScreen, "the examples")
        screen.query_one("#flt-split", Select).value = "synthetic"
        await pilot.pause()
        await until(pilot, lambda: screen.loaded and screen.flt.split == "synthetic", "synthetic examples")
        await settle(pilot)
        lineage = await press_into(pilot, "l", LineageScreen, "the lineage")
        tree = lineage.query_one(LineageTree)
        assert tree.root.data is not None and tree.root.data["id"] == parent.id and parent.split == "seed"
        assert child.id in tree.by_example
        round0 = next(n for n in tree.root.children if n.data and n.data.get("_round") == 0)
        assert "miss" in str(round0.label), "the seed was missed in round 0, so the teacher wrote from it"
        assert {n.data["id"] for n in round0.children} == {s.id for s in siblings}
        rounds_shown = [n.data["_round"] for n in tree.root.children]
        assert rounds_shown == sorted(p.round for p in store.predictions(run_id, example_id=parent.id))
        await pilot.pause()
        assert tree.cursor_node is tree.by_example[child.id], "the cursor starts on the example we came from"
        await pilot.press("p")
        assert tree.cursor_node is round0
        await pilot.press("escape")
        assert isinstance(app.screen, ExamplesScreen)


# new-run form ---------------------------------------------------------------------------------------------------
def _fill(form: ConfigForm, doc: dict[str, Any], prefix: str = "") -> None:
    """Type a config mapping into the form, field by field."""
    for key, value in doc.items():
        if isinstance(value, dict) and f"{prefix}{key}" not in form.by_key:
            _fill(form, value, f"{prefix}{key}.")
        else:
            spec = form.by_key[f"{prefix}{key}"]
            form.set_text(spec.key, to_text(spec, value))


@async_test
async def test_new_run_form_validates_as_you_type_and_previews_the_dry_run(tiny_config: RunConfig, tmp_path: Path) -> None:
    doc = tiny_config.model_dump(mode="json")
    app = L2LApp(tmp_path / "l2l.db", poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        await pilot.press("n")
        screen = app.screen
        assert isinstance(screen, NewRunScreen)
        form = screen.query_one(ConfigForm)
        _fill(form, doc)
        await pilot.pause()
        assert form.errors == {} and form.cfg is not None
        assert form.cfg.to_json() == tiny_config.to_json(), "the form builds the same config as the CLI's loader"
        # a bad value typed into a field is reported at that field
        epochs = form.query_one("#f-train-epochs", Input)
        epochs.focus()
        epochs.value = ""
        await pilot.press("0")
        await pilot.pause()
        assert form.cfg is None and "greater than 0" in form.errors["train.epochs"]
        assert "greater than 0" in str(form.query_one("#err-f-train-epochs").render())
        assert epochs.has_class("-invalid")
        await pilot.press("backspace", "2")
        await pilot.pause()
        assert form.errors == {} and form.cfg is not None and form.cfg.train.epochs == 2
        # the file picker fills a data field
        pool = tiny_config.data.pool
        form.query_one("#pick-f-data-pool", Button).press()
        await pilot.pause()
        picker = app.screen
        assert isinstance(picker, PathPicker) and picker.mode == "file"
        picker.query_one("#picker-path", Input).value = str(pool)
        picker.query_one("#picker-path", Input).focus()
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, NewRunScreen) and form.text_of(form.by_key["data.pool"]) == str(pool)
        # dry run: prepare() loads the data in a worker thread, then the preview opens
        await pilot.press("f2")
        await until(pilot, lambda: isinstance(app.screen, DryRunScreen), "the dry-run preview")
        preview = app.screen
        assert isinstance(preview, DryRunScreen)
        assert len(preview.sections["pairs"]) == 2 and preview.sections["teacher"]
        assert preview.sections["masks"], preview.sections.get("mask_error")
        await pilot.press("escape")
        assert isinstance(app.screen, NewRunScreen)
        # save as TOML: the same run again from the CLI
        await pilot.press("f3")
        picker = app.screen
        assert isinstance(picker, PathPicker)
        target = tmp_path / "again.toml"
        picker.query_one("#picker-path", Input).value = str(target)
        picker.query_one("#picker-path", Input).focus()
        await pilot.press("enter")
        await until(pilot, target.exists, "the saved TOML")
        await settle(pilot)
    again = load_config(target)
    assert again.to_json() == form.cfg.to_json()


@async_test
async def test_new_run_from_a_run_starts_from_its_config(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    stored = Store(path, create=False).run(run_id).config
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, NewRunScreen), "the prefilled form")
        await pilot.pause()
        form = app.screen.query_one(ConfigForm)
        assert form.cfg is not None and form.cfg.model_dump(mode="json") == stored


# export, delete, help, palette ----------------------------------------------------------------------------------
async def export_from_the_app(path: Path, out: Path, *, model_files: bool, done: Path) -> None:
    """Export the first run from the runs screen into `out`, answering the model-files question, until `done` exists."""
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        await pilot.press("e")
        picker = app.screen
        assert isinstance(picker, PathPicker) and picker.mode == "dir"
        picker.query_one("#picker-path", Input).value = str(out)
        picker.query_one("#picker-path", Input).focus()
        await pilot.press("enter")
        assert isinstance(app.screen, ConfirmScreen), "model files or not"
        await pilot.press("y" if model_files else "n")
        await until(pilot, done.exists, "the export", timeout=600)
        await settle(pilot)


@async_test
async def test_export_writes_the_dataset_and_the_best_adapter(store_copy: tuple[Path, int], tmp_path: Path) -> None:
    path, run_id = store_copy
    out = tmp_path / "exported"
    await export_from_the_app(path, out, model_files=False, done=out / f"run-{run_id}-train.jsonl")
    assert not (out / f"run-{run_id}.Modelfile").exists()
    best = Store(path, create=False).run(run_id).best_round
    assert (out / f"run-{run_id}-adapter" / "adapter_config.json").exists(), f"adapter of round {best}"
    lines = (out / f"run-{run_id}-train.jsonl").read_text().splitlines()
    store = Store(path, create=False)
    assert len(lines) == len(store.examples(run_id, split="seed")) + len(store.examples(run_id, split="synthetic", status="kept"))


@async_test
async def test_export_with_model_files_writes_what_l2l_export_writes(store_copy: tuple[Path, int], tmp_path: Path) -> None:
    path, run_id = store_copy
    out = tmp_path / "exported"
    await export_from_the_app(path, out, model_files=True, done=out / f"run-{run_id}-manifest.json")
    for name in (f"run-{run_id}.Modelfile", f"run-{run_id}-f16.gguf", f"run-{run_id}-q8_0.gguf", f"run-{run_id}-merged"):
        assert (out / name).exists(), name


@async_test
async def test_delete_asks_first(store_copy: tuple[Path, int]) -> None:
    path, run_id = store_copy
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot)
        await pilot.press("d")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, RunsScreen)
        assert Store(path, create=False).count("runs") == 1
        await pilot.press("d", "y")
        await until(pilot, lambda: not runs.all_runs, "the run to disappear")
        assert runs.query_one("#runs-empty").display
    store = Store(path, create=False)
    assert store.count("runs") == 0 and store.count("examples", run_id=run_id) == 0


@async_test
async def test_help_screen_and_command_palette_commands(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        titles = [c.title for c in app.get_system_commands(runs)]
        for title in (f"Open run {run_id}", f"Start / resume run {run_id}", f"Stop run {run_id}",
                      f"Examples of run {run_id}", f"Export run {run_id}", f"Delete run {run_id}", "New run"):
            assert title in titles
        await pilot.press("ctrl+p")
        await pilot.pause()
        from textual.command import CommandPalette

        assert isinstance(app.screen, CommandPalette)
        await pilot.press("escape")



@async_test
async def test_the_palettes_maximize_and_the_pane_keys_both_work_on_the_dashboard(tiny_run_store: tuple[Path, int]) -> None:
    """Textual's own palette command calls screen.action_maximize() with no argument: a pane key's action must not
    take its name (it did, and choosing "Maximize" raised a TypeError that closed the app)."""
    path, _ = tiny_run_store
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        dash = await press_into(pilot, "enter", DashboardScreen, "the dashboard")
        dash.query_one(RoundTable).focus()
        await pilot.pause()
        maximize = next(c for c in app.get_system_commands(dash) if c.title == "Maximize")
        maximize.callback()
        await pilot.pause()
        assert dash.maximized is dash.query_one(RoundTable)
        await pilot.press("escape")
        assert dash.maximized is None and app.screen is dash
        await pilot.press("t")
        assert dash.maximized is dash.query_one("#teacher")
        await pilot.press("t")
        assert dash.maximized is None and app.is_running

# the store watcher ----------------------------------------------------------------------------------------------
def test_watcher_reports_each_change_once(store_copy: tuple[Path, int]) -> None:
    path, run_id = store_copy

    class Sink:
        def post_message(self, message: Any) -> bool:
            return True

    watcher = StoreWatcher(path, Sink(), run_id, runs=True)  # type: ignore[arg-type]
    store = Store(path, create=False)
    first = watcher.poll(store)
    kinds = [type(m).__name__ for m in first]
    assert kinds == ["RunsChanged", "RunChanged", "RoundsChanged", "EventsArrived", "ProgressChanged"]
    events = next(m for m in first if isinstance(m, EventsArrived))
    assert events.initial and len(events.events) == min(300, store.count("events", run_id=run_id))
    assert watcher.poll(store) == [], "nothing changed, nothing posted"
    # what the engine writes while a phase runs
    store.set_progress(run_id, 2, "train", 3, 10, "loss 1.0")
    store.log(run_id, "round 2: training", kind="phase")
    later = watcher.poll(store)
    assert [type(m) for m in later] == [EventsArrived, ProgressChanged]
    assert later[0].events[-1].message == "round 2: training" and not later[0].initial
    assert later[1].progress.done == 3
    # progress messages coalesce: a newer one replaces an unhandled older one of the same run
    assert ProgressChanged(run_id, None).can_replace(ProgressChanged(run_id, later[1].progress))
    assert not ProgressChanged(run_id, None).can_replace(ProgressChanged(run_id + 1, None))
    assert not ProgressChanged(run_id, None).can_replace(RoundsChanged(run_id, []))
    store.delete_run(run_id)
    gone = watcher.poll(store)
    assert any(isinstance(m, RunChanged) and m.run is None for m in gone)


# real worker processes ------------------------------------------------------------------------------------------
def _status(path: Path, run_id: int) -> str:
    store = Store(path, create=False)
    try:
        return effective_status(store.run(run_id))
    finally:
        store.close()


def _kill(path: Path, run_id: int) -> None:
    store = Store(path, create=False)
    pid = store.run(run_id).pid
    store.close()
    if pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fresh_run(tiny_config: RunConfig) -> Any:
    """A created (not started) tiny run with rounds to spare; its worker is killed at teardown if still alive."""
    tiny_config.loop.rounds = 6
    store = Store(tiny_config.store)
    run_id = create_run(store, prepare(tiny_config))
    store.close()
    yield tiny_config.store, run_id
    _kill(tiny_config.store, run_id)


@async_test
async def test_launch_from_the_form_starts_a_worker_and_opens_its_dashboard(tiny_config: RunConfig) -> None:
    path = tiny_config.store
    tiny_config.loop.rounds = 6
    app = L2LApp(path, poll_seconds=0.1)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await open_runs(pilot)
            await pilot.press("n")
            form = app.screen.query_one(ConfigForm)
            _fill(form, tiny_config.model_dump(mode="json"))
            await pilot.pause()
            assert form.cfg is not None
            await pilot.press("f5")  # prepare() + create_run() in a worker thread, then spawn_worker()
            await until(pilot, lambda: isinstance(app.screen, DashboardScreen), "the new run's dashboard")
            dash = app.screen
            assert isinstance(dash, DashboardScreen)
            await until(pilot, lambda: dash.loaded and dash.status == "running", "the launched worker")
            assert dash.run is not None and dash.run.name == tiny_config.name
            await pilot.press("s")
            await until(pilot, lambda: dash.status == "stopped", "the stop")
    finally:
        for run in Store(path, create=False).runs():
            _kill(path, run.id)


@async_test
async def test_start_stop_quit_reopen_and_resume_a_real_worker(fresh_run: tuple[Path, int]) -> None:
    path, run_id = fresh_run
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot)
        table = runs.query_one(RunsTable)
        assert cell(table, str(run_id), "status") == "created"
        await pilot.press("r")
        await until(pilot, lambda: _status(path, run_id) == "running", "the worker to start")
        await until(pilot, lambda: cell(table, str(run_id), "status") == "running", "the table to show it running")
        await pilot.press("s")
        await until(pilot, lambda: _status(path, run_id) == "stopped", "the worker to stop after its phase")
        await until(pilot, lambda: cell(table, str(run_id), "status") == "stopped", "the table to show it stopped")
        store = Store(path, create=False)
        await until(pilot, lambda: not pid_alive(store.run(run_id).pid), "the worker process to exit")
        assert store.rounds(run_id)[0].phase != "train", "the phase in flight was finished before stopping"
        await pilot.press("r")
        await until(pilot, lambda: _status(path, run_id) == "running", "the worker to resume")
    # the app is closed: the job goes on
    pid = Store(path, create=False).run(run_id).pid
    assert pid_alive(pid) and _status(path, run_id) == "running"
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        runs = await open_runs(pilot)
        assert cell(runs.query_one(RunsTable), str(run_id), "status") == "running"
        await pilot.press("enter")
        dash = app.screen
        assert isinstance(dash, DashboardScreen)
        await until(pilot, lambda: dash.loaded and dash.status == "running", "the live dashboard")
        await pilot.press("s")
        await until(pilot, lambda: dash.status == "stopped", "the dashboard to show the stop")
        await until(pilot, lambda: not pid_alive(pid), "the worker process to exit")


@async_test
async def test_a_killed_worker_shows_crashed_with_its_log_and_resumes(fresh_run: tuple[Path, int],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path, run_id = fresh_run
    monkeypatch.setenv("L2L_FAULT", "train:0:kill")  # the spawned worker kills itself -9 after training round 0
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await open_runs(pilot)
        dash = await press_into(pilot, "enter", DashboardScreen, "the dashboard")
        await pilot.press("r")
        await until(pilot, lambda: dash.status == "crashed", "the crash to show")
        log_text = "\n".join(str(line.text) for line in dash.query_one(LogPane).lines)
        assert dash._tail_shown, "the dead worker's own log is shown"
        assert "last lines of" in log_text and "started (pid" in log_text
        monkeypatch.delenv("L2L_FAULT")
        await pilot.press("r")
        await until(pilot, lambda: dash.status == "running", "the resumed worker")
        await pilot.press("s")
        await until(pilot, lambda: dash.status == "stopped", "the stop")
    assert Store(path, create=False).round(run_id, 0).phase != "train"
