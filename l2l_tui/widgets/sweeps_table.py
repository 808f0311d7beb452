"""The table of every sweep in the store."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding

from l2l_tui.fmt import STATUS_STYLE, cut, local_time
from l2l_tui.widgets.row_table import RowTable


class SweepsTable(RowTable):
    """Sweeps, newest first; the row key is the sweep id; the cursor stays on its sweep across refreshes."""

    COLUMNS = (("id", "id"), ("name", "name"), ("status", "status"), ("arms", "arms"), ("seed sets", "sets"),
               ("runs finished", "runs"), ("started", "started"))

    BINDINGS = [Binding("enter", "select_cursor", "open")]

    def show(self, sweeps: list[dict[str, Any]], frozen: bool = False) -> None:
        """Replace the rows, keeping the cursor on the sweep it was on."""
        self.fill([(str(s["id"]), [
            Text(str(s["id"]), justify="right"), cut(s["name"], 24),
            Text(s["status"], style=STATUS_STYLE.get(s["status"], "")), cut(", ".join(s["arms"]), 40),
            Text(str(s["seed_sets"]), justify="right"),
            Text(f"{s['finished']}/{s['planned']}", justify="right"), local_time(s["created"], frozen),
        ]) for s in sweeps], scroll=True)

    @property
    def selected_sweep_id(self) -> int | None:
        """The sweep under the cursor."""
        return self.selected_int
