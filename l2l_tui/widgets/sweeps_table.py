"""The table of every sweep in the store."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from l2l_tui.fmt import STATUS_STYLE, cut, local_time

COLUMNS = (("id", "id"), ("name", "name"), ("status", "status"), ("arms", "arms"), ("seed sets", "sets"),
           ("runs finished", "runs"), ("started", "started"))


class SweepsTable(DataTable):
    """Sweeps, newest first; the row key is the sweep id; the cursor stays on its sweep across refreshes."""

    BINDINGS = [Binding("enter", "select_cursor", "open")]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        """Create the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, sweeps: list[dict[str, Any]], frozen: bool = False) -> None:
        """Replace the rows, keeping the cursor on the sweep it was on."""
        current = self.selected_sweep_id
        self.clear()
        for s in sweeps:
            self.add_row(Text(str(s["id"]), justify="right"), cut(s["name"], 24),
                         Text(s["status"], style=STATUS_STYLE.get(s["status"], "")), cut(", ".join(s["arms"]), 40),
                         Text(str(s["seed_sets"]), justify="right"),
                         Text(f"{s['finished']}/{s['planned']}", justify="right"), local_time(s["created"], frozen),
                         key=str(s["id"]))
        if current is not None and str(current) in self.rows:
            self.move_cursor(row=self.get_row_index(str(current)))

    @property
    def selected_sweep_id(self) -> int | None:
        """The sweep under the cursor."""
        if not self.row_count or not 0 <= self.cursor_row < self.row_count:
            return None
        key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key
        return int(key.value) if key.value is not None else None
