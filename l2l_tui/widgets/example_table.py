"""The example browser's table: one row per example with the student's answer in the chosen round."""

from __future__ import annotations

from rich.text import Text

from engine.store.rows import ExampleListing
from l2l_tui.widgets.row_table import RowTable


def one_line(text: str | None, width: int) -> str:
    """Text on one line, cut to a width."""
    flat = " ".join((text or "").split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


class ExampleTable(RowTable):
    """Examples of a run; the row key is the example id; a synthetic row no teacher wrote shows its origin in the split
    column (synthetic·pool, synthetic·eda, synthetic·oracle)."""

    COLUMNS = (("id", "id"), ("split", "split"), ("round", "origin"), ("parent", "parent"), ("status", "status"),
               ("answer", "answer"), ("student", "student"), ("input", "input"))

    def show(self, rows: list[ExampleListing]) -> None:
        """Replace the rows."""
        self.clear()
        for r in rows:
            status = r.status if r.status != "rejected" else f"rej: {r.reason or '?'}"
            if r.correct is None:
                student = Text("·", style="dim")
            else:
                mark, style = ("✓", "green") if r.correct else ("✗", "red")
                student = Text(f"{mark} {one_line(r.extracted if r.extracted is not None else '∅', 12)}", style=style)
            origin = r.origin
            split = r.split if origin in (None, "teacher") else Text(f"{r.split}·{origin}", style="cyan")
            self.add_row(Text(str(r.id), justify="right"), split, "-" if r.origin_round is None else str(r.origin_round),
                         "-" if r.parent_id is None else f"#{r.parent_id}",
                         Text(one_line(status, 20), style="red" if r.status == "rejected" else ""),
                         one_line(r.answer, 12), student, one_line(r.input, 64), key=str(r.id))

    @property
    def selected_id(self) -> int | None:
        """The example under the cursor."""
        return self.selected_int
