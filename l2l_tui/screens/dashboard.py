"""The run dashboard: round table with the selected round's details, live phase progress with ETA, accuracy plot,
teacher stream, log."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Footer, Header, Static

from engine.run.worker import worker_log
from engine.store.rows import Progress, Run
from l2l_tui.messages import ExportRun, OpenExamples, StartRun, StopRun
from l2l_tui.screens.watched import WatchedScreen
from l2l_tui.watch import EventsArrived, ProgressChanged, RoundsChanged, RunChanged, StoreWatcher, WatchFailed
from l2l_tui.widgets.accuracy_plot import AccuracyPlot
from l2l_tui.widgets.log_pane import LogPane
from l2l_tui.widgets.progress import PhaseProgress
from l2l_tui.widgets.round_table import RoundTable, round_detail
from l2l_tui.widgets.run_header import RunHeader
from l2l_tui.widgets.teacher_stream import TeacherStream

SHORT_HEIGHT = 32  # below this many rows the screen gets the -short class (app.tcss): fewer lines above the plot


class DashboardScreen(WatchedScreen):
    """One run, live: everything on it comes from the store watcher's messages."""

    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_HEIGHT, "-tall")]

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("x", "examples", "examples"),
        Binding("r", "resume", "start/resume"),
        Binding("s", "stop", "stop"),
        Binding("e", "export", "export"),
        Binding("p", "full('#accuracy-plot')", "plot full"),
        Binding("t", "full('#teacher')", "teacher full"),
        Binding("l", "full('#log')", "log full"),
    ]

    def __init__(self, run_id: int) -> None:
        super().__init__()
        self.run_id = run_id
        self.run: Run | None = None
        self.status = "created"
        self.rows: list[dict[str, Any]] = []
        self.progress: Progress | None = None
        self.watcher: StoreWatcher | None = None
        self.loaded = False
        self._tail_shown: list[str] = []
        self._events_seen = False

    @property
    def current_run_id(self) -> int:
        """The run this dashboard shows."""
        return self.run_id

    def compose(self) -> ComposeResult:
        """Header lines, progress, table + plot, teacher + log."""
        yield Header()
        yield RunHeader("", id="run-header")
        yield PhaseProgress(id="phase")
        yield RoundTable(id="round-table")
        yield Static("", id="round-detail")
        with Horizontal(id="dash-bottom"):
            yield AccuracyPlot(id="accuracy-plot")
            with Vertical(id="dash-streams"):
                yield TeacherStream(id="teacher")
                yield LogPane(id="log")
        yield Footer()

    def on_mount(self) -> None:
        """Name the panes and start watching the run."""
        self.query_one("#teacher").border_title = "teacher: new examples"
        self.query_one("#log").border_title = "log"
        self.query_one("#round-table").border_title = "rounds · * best on validation · round 0 = plain fine-tuning · seconds per phase"
        self.query_one("#accuracy-plot").border_title = "accuracy % per round"
        self.watcher = self.l2l.watchers.start(self, run_id=self.run_id)
        self.query_one(RoundTable).focus()

    @property
    def frozen(self) -> bool:
        """Whether wall-clock values are hidden (snapshot tests)."""
        return bool(getattr(self.app, "frozen", False))

    # messages from the watcher --------------------------------------------------------------------
    @on(RunChanged)
    def _run_changed(self, event: RunChanged) -> None:
        self.run, self.status = event.run, event.status
        self.sub_title = f"run {self.run_id} · {self.status}"
        self._header()
        self.query_one(PhaseProgress).show(self.progress, self.status, self.frozen)
        if event.log_tail and event.log_tail != self._tail_shown:
            self._tail_shown = event.log_tail
            if self._events_seen:
                self._show_tail()

    @on(RoundsChanged)
    def _rounds_changed(self, event: RoundsChanged) -> None:
        self.rows = event.rows
        best = self.run.best_round if self.run else None
        self.query_one(RoundTable).show(self.rows, best, self.frozen)
        self.query_one(AccuracyPlot).show(self.rows, best)
        self._header()
        self._detail()

    @on(DataTable.RowHighlighted, "#round-table")
    def _round_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._detail()

    def _detail(self) -> None:
        """The line under the table: the round under the cursor in full."""
        idx = self.query_one(RoundTable).selected_round
        row = next((r for r in self.rows if r["round"] == idx), None)
        self.query_one("#round-detail", Static).update(round_detail(row))

    @on(EventsArrived)
    def _events(self, event: EventsArrived) -> None:
        self.query_one(TeacherStream).add_events(event.events)
        self.query_one(LogPane).add_events(event.events, self.frozen)
        if event.initial:
            self._events_seen = True
            if self._tail_shown:
                self._show_tail()

    def _show_tail(self) -> None:
        """The dead worker's own last lines, after its events."""
        path = worker_log(self.l2l.store_path, self.run_id)
        self.query_one(LogPane).add_worker_tail(self._tail_shown, str(path))

    @on(ProgressChanged)
    def _progress(self, event: ProgressChanged) -> None:
        self.progress = event.progress
        self.query_one(PhaseProgress).show(self.progress, self.status, self.frozen)
        self.loaded = True

    @on(WatchFailed)
    def _watch_failed(self, event: WatchFailed) -> None:
        self.notify(f"reading the store failed: {event.error}", severity="warning")

    def _header(self) -> None:
        self.query_one(RunHeader).show(self.run, self.status, self.rows, self.frozen)
        if self.run is not None:
            best = self.run.best_round
            self.query_one(AccuracyPlot).best = best

    # actions ------------------------------------------------------------------------------------
    def action_examples(self) -> None:
        """Browse this run's examples."""
        self.post_message(OpenExamples(self.run_id))

    def action_resume(self) -> None:
        """Start or resume this run's worker."""
        self.post_message(StartRun(self.run_id))

    def action_stop(self) -> None:
        """Ask this run to stop after the phase in flight."""
        self.post_message(StopRun(self.run_id))

    def action_export(self) -> None:
        """Export this run."""
        self.post_message(ExportRun(self.run_id))
