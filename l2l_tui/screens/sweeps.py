"""The sweeps screen: every sweep of the store (`l2l sweep CONFIG`), how far it got; enter opens one."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Label, Static

from l2l_tui.messages import OpenSweep
from l2l_tui.screens.watched import WatchedScreen
from l2l_tui.watch import StoreWatcher, SweepsChanged, WatchFailed
from l2l_tui.widgets.sweeps_table import SweepsTable

EMPTY = "No sweeps in this store yet — start one with [b]l2l sweep CONFIG[/] (a config with a [b]\\[sweep][/] table)."


class SweepsScreen(WatchedScreen):
    """All sweeps of the store, newest first."""

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("enter", "open", "open", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.sweeps: list[dict[str, Any]] = []
        self.watcher: StoreWatcher | None = None
        self.loaded = False

    @property
    def current_sweep_id(self) -> int | None:
        """The sweep under the cursor."""
        return self.query_one(SweepsTable).selected_sweep_id

    def compose(self) -> ComposeResult:
        """Count, table, empty note."""
        yield Header()
        yield Label("", id="sweeps-count")
        yield SweepsTable(id="sweeps-table")
        yield Static(EMPTY, id="sweeps-empty")
        yield Footer()

    def on_mount(self) -> None:
        """Start watching the store's sweeps."""
        self.sub_title = "sweeps"
        self.watcher = self.l2l.watchers.start(self, sweeps=True)
        self.query_one(SweepsTable).focus()

    @on(SweepsChanged)
    def _sweeps_changed(self, event: SweepsChanged) -> None:
        self.sweeps = event.sweeps
        table = self.query_one(SweepsTable)
        table.show(self.sweeps, self.l2l.frozen)
        table.display = bool(self.sweeps)
        self.query_one("#sweeps-empty").display = not self.sweeps
        self.query_one("#sweeps-count", Label).update(f"{len(self.sweeps)} sweeps · enter opens one")
        self.loaded = True

    @on(WatchFailed)
    def _watch_failed(self, event: WatchFailed) -> None:
        self.notify(f"reading the store failed: {event.error}", severity="warning")

    @on(DataTable.RowSelected, "#sweeps-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    def action_open(self) -> None:
        """Open the sweep under the cursor."""
        sweep_id = self.current_sweep_id
        if sweep_id is None:
            self.notify("no sweep selected", severity="warning")
            return
        self.post_message(OpenSweep(sweep_id))
