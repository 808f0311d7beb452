"""The llm2llm terminal app: runs, new-run form, live dashboard, example browser, sweeps; the engine runs as its own process."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from textual import on
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.screen import Screen

from l2l_tui.messages import (
    DeleteRun,
    ExportRun,
    NewRun,
    OpenExamples,
    OpenRun,
    OpenSweep,
    OpenSweeps,
    RunLaunched,
    StartRun,
    StopRun,
)
from l2l_tui.queries import LIVE_STATUSES, open_store, run_list
from l2l_tui.watchers import Watchers
from models.errors import L2LError

if TYPE_CHECKING:
    from l2l_tui.screens.base import AppState


class RunCommands(Provider):
    """Command palette: open any run of the store by id or name."""

    async def _runs(self) -> list[dict[str, Any]]:
        app = cast(L2LApp, self.app)

        def read() -> list[dict[str, Any]]:
            store = open_store(app.store_path)
            try:
                return run_list(store)
            finally:
                store.close()

        return await asyncio.to_thread(read)

    def _title(self, run: dict[str, Any]) -> str:
        return f"Open run {run['id']} {run['name']} ({run['status']}, {run['task']})"

    async def discover(self) -> Hits:
        """Every run, newest first."""
        app = cast(L2LApp, self.app)
        for run in (await self._runs())[:20]:
            yield DiscoveryHit(self._title(run), partial(app.open_run, run["id"]), help="show its dashboard")

    async def search(self, query: str) -> Hits:
        """Runs matching the query."""
        app = cast(L2LApp, self.app)
        matcher = self.matcher(query)
        for run in await self._runs():
            title = self._title(run)
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(app.open_run, run["id"]), help="show its dashboard")


class L2LApp(App[None]):
    """Observes and commands llm2llm runs through one SQLite store."""

    CSS_PATH = "app.tcss"
    TITLE = "llm2llm"
    COMMANDS = App.COMMANDS | {RunCommands}
    BINDINGS = [
        Binding("question_mark", "help", "help"),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, store_path: Path, *, frozen: bool = False, poll_seconds: float = 0.5) -> None:
        super().__init__()
        self.store_path = Path(store_path).expanduser().resolve()
        self.frozen = frozen  # snapshot mode: wall-clock times and durations are hidden
        self.poll_seconds = poll_seconds
        self.watchers = Watchers(self.store_path, poll_seconds)
        self.spawned: dict[int, int] = {}

    def on_mount(self) -> None:
        """Open the runs screen."""
        from l2l_tui.screens.runs import RunsScreen

        self.sub_title = self.store_path.name if self.frozen else str(self.store_path)
        if not self.store_path.exists():
            open_store(self.store_path).close()  # an empty store, so the first launch has somewhere to look
        self.push_screen(RunsScreen())

    def on_unmount(self) -> None:
        """Stop every watcher thread (running jobs are separate processes and keep running)."""
        self.watchers.stop_all()

    # background work ----------------------------------------------------------------------------
    def background(self, label: str, fn: Callable[[], Any], on_done: Callable[[Any], object] | None = None) -> None:
        """Run fn in a worker thread; errors become a notification, the result goes to on_done on the event loop."""

        def body() -> None:
            try:
                result = fn()
            except L2LError as err:
                self._from_thread(self.notify, f"{label}: {err}", severity="error", timeout=10, markup=False)
                return
            except Exception as err:  # the app must survive anything a worker meets
                self._from_thread(self.notify, f"{label} failed: {type(err).__name__}: {err}", severity="error",
                                  timeout=10, markup=False)
                return
            if on_done is not None:
                self._from_thread(on_done, result)
            self._from_thread(self.watchers.poke)

        self.run_worker(body, thread=True, group="actions", name=label, exit_on_error=False)

    def _from_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        try:
            self.call_from_thread(fn, *args, **kwargs)
        except RuntimeError:  # the app closed meanwhile
            pass

    def _with_store(self, fn: Callable[[Any], Any]) -> Callable[[], Any]:
        def call() -> Any:
            store = open_store(self.store_path)
            try:
                return fn(store)
            finally:
                store.close()

        return call

    # commands the screens post (l2l_tui.messages) ----------------------------------------------
    @on(OpenRun)
    def _open_run_requested(self, message: OpenRun) -> None:
        self.open_run(message.run_id)

    @on(OpenExamples)
    def _open_examples_requested(self, message: OpenExamples) -> None:
        self.open_examples(message.run_id)

    @on(OpenSweeps)
    def _open_sweeps_requested(self, message: OpenSweeps) -> None:
        self.open_sweeps()

    @on(OpenSweep)
    def _open_sweep_requested(self, message: OpenSweep) -> None:
        self.open_sweep(message.sweep_id)

    @on(NewRun)
    def _new_run_requested(self, message: NewRun) -> None:
        self.new_run(message.from_run)

    @on(StartRun)
    def _start_run_requested(self, message: StartRun) -> None:
        self.start_run(message.run_id)

    @on(StopRun)
    def _stop_run_requested(self, message: StopRun) -> None:
        self.stop_run(message.run_id)

    @on(ExportRun)
    def _export_run_requested(self, message: ExportRun) -> None:
        self.export_dialog(message.run_id)

    @on(DeleteRun)
    def _delete_run_requested(self, message: DeleteRun) -> None:
        self.delete_dialog(message.run_id)

    @on(RunLaunched)
    def _run_launched(self, message: RunLaunched) -> None:
        self.note_spawned(message.run_id, message.pid)
        self.open_run(message.run_id)

    # run actions (the message handlers' and the command palette's) -----------------------------
    def open_run(self, run_id: int) -> None:
        """Show a run's dashboard."""
        from l2l_tui.screens.dashboard import DashboardScreen

        self.push_screen(DashboardScreen(run_id))

    def open_examples(self, run_id: int) -> None:
        """Show a run's example browser."""
        from l2l_tui.screens.examples import ExamplesScreen

        self.push_screen(ExamplesScreen(run_id))

    def open_sweeps(self) -> None:
        """Show the store's sweeps."""
        from l2l_tui.screens.sweeps import SweepsScreen

        if not isinstance(self.screen, SweepsScreen):
            self.push_screen(SweepsScreen())

    def open_sweep(self, sweep_id: int) -> None:
        """Show one sweep: arms, paired deltas, validation per round, rejections, report files."""
        from l2l_tui.screens.sweep import SweepScreen

        self.push_screen(SweepScreen(sweep_id))

    def new_run(self, from_run: int | None = None) -> None:
        """Open the new-run form (prefilled from a run's config when given)."""
        from l2l_tui.screens.new_run import NewRunScreen

        if from_run is None:
            self.push_screen(NewRunScreen())
            return

        def read(store: Any) -> dict[str, Any]:
            return store.run(from_run).config

        self.background("read config", self._with_store(read),
                        lambda cfg: self.push_screen(NewRunScreen(cfg, title=f"new run from run {from_run}")))

    def note_spawned(self, run_id: int, pid: int) -> None:
        """Remember a worker this app started (so a second start is refused until it reports in)."""
        self.spawned[run_id] = pid

    def start_run(self, run_id: int) -> None:
        """Start or resume a run in a detached worker process."""
        from engine.run.runs import effective_status, pid_alive
        from engine.run.worker import spawn_worker

        def start(store: Any) -> int:
            run = store.run(run_id)
            status = effective_status(run)
            if status in LIVE_STATUSES:
                raise L2LError(f"run {run_id} is already {status} (pid {run.pid})")
            if status == "finished":
                raise L2LError(f"run {run_id} is finished; nothing to resume")
            if pid_alive(self.spawned.get(run_id)):
                raise L2LError(f"run {run_id}: a worker (pid {self.spawned[run_id]}) is starting already")
            return spawn_worker(self.store_path, run_id)

        def started(pid: int) -> None:
            self.note_spawned(run_id, pid)
            self.notify(f"run {run_id}: worker started (pid {pid})")

        self.background(f"start run {run_id}", self._with_store(start), started)

    def stop_run(self, run_id: int) -> None:
        """Ask a run's worker to finish the phase in flight and exit."""
        from engine.run.runs import effective_status, request_stop

        def stop(store: Any) -> None:
            status = effective_status(store.run(run_id))
            if status not in LIVE_STATUSES:
                raise L2LError(f"run {run_id} is {status}, not running")
            request_stop(store, run_id)

        self.background(f"stop run {run_id}", self._with_store(stop),
                        lambda _: self.notify(f"run {run_id}: stop requested; it exits after the phase in flight"))

    def export_dialog(self, run_id: int) -> None:
        """Ask for a folder and whether to build the model files, then export: the final training set (JSONL) and the
        best adapter, and on request the merged model, the GGUFs and an Ollama Modelfile (as `l2l export`)."""
        from engine.export.run_export import LIGHT, PARTS, export_run
        from l2l_tui.screens.confirm import ConfirmScreen
        from l2l_tui.screens.file_picker import PathPicker

        def say(message: str) -> None:
            self._from_thread(self.notify, f"export run {run_id}: {message}", markup=False)

        def export(folder: Path, full: bool | None) -> None:
            parts = PARTS if full else LIGHT
            self.background(f"export run {run_id}",
                            self._with_store(lambda store: export_run(store, run_id, folder, parts, say=say)),
                            lambda written: self.notify("exported\n" + "\n".join(f"{k}: {v}" for k, v in written.items()),
                                                        timeout=10, markup=False))

        def chosen(folder: Path | None) -> None:
            if folder is None:
                return
            self.push_screen(ConfirmScreen("Also build the model files: the merged 16-bit model, f16 and q8_0 GGUFs and an "
                                           "Ollama Modelfile? This loads the student and takes minutes.\n"
                                           "No: the training set and the adapter only.", yes="Model files too"),
                             lambda full: export(folder, full))

        self.push_screen(PathPicker(f"export run {run_id} into folder", "dir", Path.cwd()), chosen)

    def delete_dialog(self, run_id: int) -> None:
        """Ask, then delete a run that is not running."""
        from engine.run.runs import effective_status
        from engine.run.worker import worker_log
        from l2l_tui.screens.confirm import ConfirmScreen

        def delete(store: Any) -> None:
            status = effective_status(store.run(run_id))
            if status in LIVE_STATUSES:
                raise L2LError(f"run {run_id} is {status}; stop it first")
            store.delete_run(run_id)

        def answered(yes: bool | None) -> None:
            if yes:
                self.background(f"delete run {run_id}", self._with_store(delete),
                                lambda _: self.notify(f"run {run_id} deleted"))

        folder = worker_log(self.store_path, run_id).parent
        self.push_screen(ConfirmScreen(f"Delete run {run_id} and all its rounds, examples, predictions and events?\n"
                                       f"Its folder {folder} (adapters, worker.log) is kept.", yes="Delete"), answered)

    # keys and palette ---------------------------------------------------------------------------
    def action_help(self) -> None:
        """Show the help screen, with the keys of every screen."""
        from l2l_tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.key_sections()))

    def key_sections(self) -> list[tuple[str, list[BindingType]]]:
        """(name, bindings) of the app and each screen, in the order the help lists them."""
        from l2l_tui.screens.dashboard import DashboardScreen
        from l2l_tui.screens.examples import ExamplesScreen
        from l2l_tui.screens.lineage import LineageScreen
        from l2l_tui.screens.new_run import NewRunScreen
        from l2l_tui.screens.runs import RunsScreen
        from l2l_tui.screens.sweep import SweepScreen
        from l2l_tui.screens.sweeps import SweepsScreen

        return [("everywhere", list(self.BINDINGS)), ("runs", list(RunsScreen.BINDINGS)),
                ("run dashboard", list(DashboardScreen.BINDINGS)), ("examples", list(ExamplesScreen.BINDINGS)),
                ("lineage", list(LineageScreen.BINDINGS)), ("new run", list(NewRunScreen.BINDINGS)),
                ("sweeps", list(SweepsScreen.BINDINGS)), ("sweep", list(SweepScreen.BINDINGS))]

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """The palette's commands: the main actions, for the run the screen is on."""
        yield from super().get_system_commands(screen)
        yield SystemCommand("New run", "fill the new-run form (generated from the config schema)", self.new_run)
        yield SystemCommand("Help", "keys of every screen", self.action_help)
        yield SystemCommand("Sweeps", "every sweep: arms over seed sets, paired deltas, report files", self.open_sweeps)
        sweep_id = getattr(screen, "current_sweep_id", None)
        if sweep_id is not None:
            yield SystemCommand(f"Open sweep {sweep_id}", "arms, paired deltas, plot, rejections", partial(self.open_sweep, sweep_id))
        run_id = getattr(screen, "current_run_id", None)
        if run_id is None:
            return
        yield SystemCommand(f"Open run {run_id}", "dashboard: rounds, progress, plot, teacher, log", partial(self.open_run, run_id))
        yield SystemCommand(f"Start / resume run {run_id}", "in a detached worker process", partial(self.start_run, run_id))
        yield SystemCommand(f"Stop run {run_id}", "after the phase in flight", partial(self.stop_run, run_id))
        yield SystemCommand(f"Examples of run {run_id}", "browse, filter, follow lineage", partial(self.open_examples, run_id))
        yield SystemCommand(f"Export run {run_id}", "final dataset (JSONL) and best adapter", partial(self.export_dialog, run_id))
        yield SystemCommand(f"New run from run {run_id}", "the form, prefilled with its config", partial(self.new_run, run_id))
        yield SystemCommand(f"Delete run {run_id}", "asks first", partial(self.delete_dialog, run_id))


if TYPE_CHECKING:
    _gives_screens_their_state: type[AppState] = L2LApp  # mypy checks that the app has what AppState promises


def run_app(store_path: Path | None = None) -> None:
    """Open the app on a store (default: the user data folder's l2l.db)."""
    if store_path is None:
        from models.paths import default_store

        store_path = default_store()
    L2LApp(Path(store_path)).run()
