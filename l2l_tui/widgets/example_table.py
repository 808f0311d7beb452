"""The example browser's table: one row per example with the student's answer in the chosen round."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

COLUMNS = (("id", "id"), ("split", "split"), ("round", "origin"), ("parent", "parent"), ("status", "status"),
           ("answer", "answer"), ("student", "student"), ("input", "input"))


def one_line(text: str | None, width: int) -> str:
    """Text on one line, cut to a width."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class ExampleTable(DataTable):
    """Examples of a run; the row key is the example id."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        """Create the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: list[dict[str, Any]]) -> None:
        """Replace the rows."""
        self.clear()
        for r in rows:
            status = r["status"] if r["status"] != "rejected" else f"rej: {r['reason'] or '?'}"
            if r["correct"] is None:
                student = Text("·", style="dim")
            else:
                mark, style = ("✓", "green") if r["correct"] else ("✗", "red")
                student = Text(f"{mark} {one_line(r['extracted'] if r['extracted'] is not None else '∅', 12)}", style=style)
            self.add_row(Text(str(r["id"]), justify="right"), r["split"], "-" if r["origin_round"] is None else str(r["origin_round"]),
                         "-" if r["parent_id"] is None else f"#{r['parent_id']}",
                         Text(one_line(status, 20), style="red" if r["status"] == "rejected" else ""),
                         one_line(r["answer"], 12), student, one_line(r["input"], 64), key=str(r["id"]))

    @property
    def selected_id(self) -> int | None:
        """The example under the cursor."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key((self.cursor_row, 0)).row_key
        return int(key.value) if key.value is not None else None
