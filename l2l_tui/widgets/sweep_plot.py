"""Validation accuracy per round, one line per arm (mean over seed sets; the PNG report draws the min-max band)."""

from __future__ import annotations

from typing import Any

from textual_plotext import PlotextPlot

MARKERS = ("dot", "x", "+", "o", "*", "@", "#", "%")  # lines stay apart without colour too


class SweepPlot(PlotextPlot):
    """A plotext line plot of each arm's mean validation % by round."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.curves: dict[str, list[tuple[int, float, float, float, int]]] = {}

    def on_mount(self) -> None:
        """Draw the empty axes."""
        self.draw()

    def show(self, curves: dict[str, list[tuple[int, float, float, float, int]]]) -> None:
        """Plot these curves (arm -> (round, mean, min, max, runs))."""
        self.curves = curves
        self.draw()

    def draw(self) -> None:
        """Redraw from the current curves."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        rounds = sorted({k for points in self.curves.values() for k, *_ in points})
        values = [v for points in self.curves.values() for _, mean, lo, hi, _ in points for v in (lo, hi)]
        if values:
            plt.ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 5))
        else:
            plt.ylim(0, 100)
        if rounds:
            plt.xticks([float(k) for k in rounds], ["0 base" if k == 0 else str(k) for k in rounds])
            plt.xlim(min(rounds) - 0.3, max(max(rounds), 1) + 0.3)
        for i, (arm, points) in enumerate(self.curves.items()):
            if not points:
                continue
            runs = max(n for *_, n in points)
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            label = f"{arm} (n={runs})"
            if len(points) == 1 and len(rounds) > 1:  # a one-round arm (plain) is a level to compare the others with
                xs, ys, label = [min(rounds), max(rounds)], ys * 2, f"{arm} (n={runs}, round {xs[0]} only)"
            plt.plot(xs, ys, label=label, marker=MARKERS[i % len(MARKERS)])
        self.refresh()
