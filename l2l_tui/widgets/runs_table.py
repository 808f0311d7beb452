"""The table of every run in the store."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding

from engine.reports.run_report import pct
from l2l_tui.fmt import STATUS_STYLE, cut, local_time, short_model, span
from l2l_tui.widgets.row_table import RowTable


class RunsTable(RowTable):
    """Runs, newest first; the row key is the run id; the cursor stays on its run across refreshes."""

    COLUMNS = (("id", "id"), ("name", "name"), ("status", "status"), ("task", "task"), ("student", "student"),
               ("teacher", "teacher"), ("rounds", "rounds"), ("val %", "best"), ("started", "started"),
               ("duration", "duration"))

    BINDINGS = [Binding("enter", "select_cursor", "open")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runs: list[dict[str, Any]] = []

    def cells(self, run: dict[str, Any], frozen: bool) -> list[Any]:
        """One run as table cells."""
        return [
            Text(str(run["id"]), justify="right"), cut(run["name"], 20), Text(run["status"], style=STATUS_STYLE.get(run["status"], "")),
            run["task"], short_model(run["student"], 22), short_model(run["teacher"], 22),
            Text(f"{run['rounds_done']}/{run['rounds_max']}", justify="right"), Text(pct(run["best_val"]), justify="right"),
            local_time(run["created"], frozen), Text(span(run["duration"], frozen), justify="right"),
        ]

    def show(self, runs: list[dict[str, Any]], frozen: bool = False) -> None:
        """Replace the rows, keeping the cursor on the run it was on."""
        same = [r["id"] for r in runs] == [r["id"] for r in self.runs]
        if same:
            for run, old in zip(runs, self.runs, strict=True):
                if run != old:
                    for (_, key), value in zip(self.COLUMNS, self.cells(run, frozen), strict=True):
                        self.update_cell(str(run["id"]), key, value)
        else:
            self.fill([(str(run["id"]), self.cells(run, frozen)) for run in runs], scroll=True)
        self.runs = runs

    @property
    def selected_run_id(self) -> int | None:
        """The run under the cursor."""
        return self.selected_int

    def run_row(self, run_id: int | None) -> dict[str, Any] | None:
        """The shown row of a run."""
        return next((r for r in self.runs if r["id"] == run_id), None)
