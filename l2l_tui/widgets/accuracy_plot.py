"""Accuracy per round (validation and test), round 0 marked as the plain fine-tuning baseline."""

from __future__ import annotations

from typing import Any

from textual_plotext import PlotextPlot


class AccuracyPlot(PlotextPlot):
    """A plotext line plot of validation and test accuracy by round."""

    ALLOW_MAXIMIZE = True  # the dashboard's p shows it full screen (it cannot take focus, so Textual would refuse)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[dict[str, Any]] = []
        self.best: int | None = None

    def on_mount(self) -> None:
        """Draw the empty axes."""
        self.draw()

    def show(self, rows: list[dict[str, Any]], best_round: int | None) -> None:
        """Plot these round rows."""
        self.rows, self.best = rows, best_round
        self.draw()

    def draw(self) -> None:
        """Redraw from the current rows."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.ylim(0, 100)
        rounds = [r["round"] for r in self.rows]
        if rounds:
            plt.xticks(rounds, ["0 base" if i == 0 else str(i) for i in rounds])
            plt.xlim(min(rounds) - 0.3, max(max(rounds), 1) + 0.3)
        for key, label, marker in (("val_acc", "validation", "dot"), ("test_acc", "test", "x")):
            points = [(r["round"], 100 * r[key]) for r in self.rows if r[key] is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                plt.plot(list(xs), list(ys), label=label, marker=marker)
        base = next((r for r in self.rows if r["round"] == 0 and r["val_acc"] is not None), None)
        if base is not None:
            plt.hline(100 * base["val_acc"])
        if self.best is not None:
            plt.vline(self.best)
        self.refresh()
