"""The runs screen: every run in the store, filter by status, open / start / resume / stop / delete / export; w: sweeps."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Select, Static

from engine.store.db import RUN_STATUSES
from l2l_tui.messages import DeleteRun, ExportRun, NewRun, OpenExamples, OpenRun, OpenSweeps, StartRun, StopRun
from l2l_tui.queries import events_tail, log_tail, open_store
from l2l_tui.screens.watched import WatchedScreen
from l2l_tui.watch import RunsChanged, StoreWatcher, WatchFailed
from l2l_tui.widgets.log_pane import event_text
from l2l_tui.widgets.runs_table import RunsTable

EMPTY = "No runs in this store yet — press [b]n[/] for a new run, or start one with [b]l2l run CONFIG[/]."


class RunsScreen(WatchedScreen):
    """All runs of the store; the run under the cursor is the one the keys act on."""

    BINDINGS = [
        Binding("enter", "open", "open", show=False),
        Binding("n", "new", "new run"),
        Binding("c", "clone", "clone"),
        Binding("r", "resume", "start/resume"),
        Binding("s", "stop", "stop"),
        Binding("x", "examples", "examples"),
        Binding("e", "export", "export"),
        Binding("d", "delete", "delete"),
        Binding("f", "filter", "filter", show=False),
        Binding("w", "sweeps", "sweeps"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.all_runs: list[dict[str, Any]] = []
        self.status_filter: str | None = None
        self.watcher: StoreWatcher | None = None
        self.loaded = False

    def compose(self) -> ComposeResult:
        """Filter bar, table, preview of the run under the cursor."""
        yield Header()
        with Horizontal(id="runs-bar"):
            yield Select([(s, s) for s in RUN_STATUSES], prompt="all statuses", id="status-filter", compact=True)
            yield Label("", id="runs-count")
        yield RunsTable(id="runs-table")
        yield Static(EMPTY, id="runs-empty")
        yield Static("", id="run-preview")
        yield Footer()

    def on_mount(self) -> None:
        """Start watching the store."""
        self.watcher = self.l2l.watchers.start(self, runs=True)
        self.query_one(RunsTable).focus()

    # state --------------------------------------------------------------------------------------
    @property
    def current_run_id(self) -> int | None:
        """The run under the cursor."""
        return self.query_one(RunsTable).selected_run_id

    def _show(self) -> None:
        runs = [r for r in self.all_runs if self.status_filter is None or r["status"] == self.status_filter]
        table = self.query_one(RunsTable)
        table.show(runs, self.l2l.frozen)
        counts: dict[str, int] = {}
        for r in self.all_runs:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        self.query_one("#runs-count", Label).update(f"{len(runs)} of {len(self.all_runs)} runs" + (f" ({summary})" if summary else ""))
        self.query_one("#runs-empty").display = not self.all_runs
        table.display = bool(self.all_runs)

    @on(RunsChanged)
    def _runs_changed(self, event: RunsChanged) -> None:
        first = not self.loaded
        self.all_runs = event.runs
        self._show()
        self.loaded = True
        if first:
            self._preview_current()

    @on(WatchFailed)
    def _watch_failed(self, event: WatchFailed) -> None:
        self.notify(f"reading the store failed: {event.error}", severity="warning")

    @on(Select.Changed, "#status-filter")
    def _filter_changed(self, event: Select.Changed) -> None:
        self.status_filter = None if event.value is Select.NULL else str(event.value)
        self._show()

    @on(DataTable.RowSelected, "#runs-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._preview_current()

    def _preview_current(self) -> None:
        run_id = self.current_run_id
        row = self.query_one(RunsTable).run_row(run_id)
        self._preview(run_id, row["status"] if row else None)

    @work(thread=True, exclusive=True, group="preview", exit_on_error=False)
    def _preview(self, run_id: int | None, status: str | None) -> None:
        """The last events (and a dead worker's log tail) of the run under the cursor."""
        if run_id is None:
            self.app.call_from_thread(self._set_preview, Text(""))
            return
        store = open_store(self.l2l.store_path)
        try:
            events = [e for e in events_tail(store, run_id, 40) if e.kind != "teacher"][-6:]
        finally:
            store.close()
        text = Text(f"run {run_id} — last events\n", style="bold")
        for event in events:
            text.append_text(event_text(event, self.l2l.frozen))
            text.append("\n")
        if status in ("crashed", "failed"):
            text.append("worker.log tail\n", style="bold red")
            text.append("\n".join(log_tail(self.l2l.store_path, run_id, 6)), style="red")
        self.app.call_from_thread(self._set_preview, text)

    def _set_preview(self, text: Text) -> None:
        self.query_one("#run-preview", Static).update(text)

    # actions ------------------------------------------------------------------------------------
    def _need_run(self) -> int | None:
        run_id = self.current_run_id
        if run_id is None:
            self.notify("no run selected", severity="warning")
        return run_id

    def action_open(self) -> None:
        """Open the dashboard of the run under the cursor."""
        if (run_id := self._need_run()) is not None:
            self.post_message(OpenRun(run_id))

    def action_new(self) -> None:
        """A new run from the form."""
        self.post_message(NewRun())

    def action_clone(self) -> None:
        """A new run whose form starts from this run's config."""
        if (run_id := self._need_run()) is not None:
            self.post_message(NewRun(run_id))

    def action_resume(self) -> None:
        """Start (or resume) the run's worker."""
        if (run_id := self._need_run()) is not None:
            self.post_message(StartRun(run_id))

    def action_stop(self) -> None:
        """Ask the run to stop after its phase in flight."""
        if (run_id := self._need_run()) is not None:
            self.post_message(StopRun(run_id))

    def action_examples(self) -> None:
        """Browse the run's examples."""
        if (run_id := self._need_run()) is not None:
            self.post_message(OpenExamples(run_id))

    def action_export(self) -> None:
        """Export the run's final dataset and best adapter."""
        if (run_id := self._need_run()) is not None:
            self.post_message(ExportRun(run_id))

    def action_delete(self) -> None:
        """Delete the run (asks first)."""
        if (run_id := self._need_run()) is not None:
            self.post_message(DeleteRun(run_id))

    def action_sweeps(self) -> None:
        """The store's sweeps."""
        self.post_message(OpenSweeps())

    def action_filter(self) -> None:
        """Focus the status filter."""
        self.query_one("#status-filter", Select).focus()
