"""The round table of a run: sizes, misses, new examples, accuracies and time per phase."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from engine.report import PHASE_NAMES, pct
from l2l_tui.fmt import span

COLUMNS = (("round", "round"), ("phase", "phase"), ("train", "train_size"), ("misses", "misses"), ("new kept/rej", "new"),
           ("seed %", "seed"), ("val %", "val"), ("test %", "test"), ("loss", "loss"), ("train", "t_train"),
           ("eval", "t_eval"), ("teacher", "t_augment"), ("filter", "t_filter"))


class RoundTable(DataTable):
    """One row per round (engine.report.round_rows); round 0 is the plain fine-tuning baseline, * marks the best."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)

    def on_mount(self) -> None:
        """Create the columns."""
        for label, key in COLUMNS:
            self.add_column(label, key=key)

    def show(self, rows: list[dict[str, Any]], best_round: int | None, frozen: bool = False) -> None:
        """Replace the rows."""
        cursor = self.cursor_row
        self.clear()
        for r in rows:
            label = f"{r['round']}{'*' if r['round'] == best_round else ''}{' base' if r['round'] == 0 else ''}"
            new = "-" if r["generated"] is None else f"{_n(r['kept'])}/{_n(r['rejected'])}"
            style = "bold" if r["round"] == best_round else ""
            cells = [label, r["phase"], _n(r["train_size"]), _n(r["misses"]), new, pct(r["seed_acc"]), pct(r["val_acc"]),
                     pct(r["test_acc"]), "-" if r["train_loss"] is None else f"{r['train_loss']:.3f}",
                     *(span(r[f"{p}_s"], frozen) for p in PHASE_NAMES)]
            self.add_row(*(Text(str(c), style=style, justify="left" if i < 2 else "right") for i, c in enumerate(cells)),
                         key=str(r["round"]))
        if rows:
            self.move_cursor(row=min(max(cursor, 0), len(rows) - 1), scroll=False)


def _n(value: Any) -> str:
    return "-" if value is None else str(value)
