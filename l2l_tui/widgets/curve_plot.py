"""The data-efficiency curve of a sweep with seed sizes: test % per arm against seed size, the oracle as the ceiling."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.widgets import Static
from textual_plotext import PlotextPlot

from l2l_tui.widgets.sweep_plot import MARKERS

CEILING = "oracle"  # real rows with true labels: the most any way of adding examples can give


class CurvePlot(PlotextPlot):
    """A plotext line plot of each arm's mean test % by seed size (log-2 axis); a vertical line at the size shown."""

    DEFAULT_CSS = "CurvePlot { width: 1fr; border: round $primary-darken-2; }"
    ALLOW_MAXIMIZE = True  # the sweep screen's p shows it full screen

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.curve: dict[str, dict[int, Any]] = {}
        self.current: int | None = None

    def on_mount(self) -> None:
        """Draw the empty axes."""
        self.draw()

    def show(self, curve: dict[str, dict[int, Any]], current: int | None = None) -> None:
        """Plot this curve (engine.reports.curve.curve: arm -> size -> Spread of test accuracy), marking the size `current`."""
        self.curve, self.current = curve, current
        self.draw()

    def points(self) -> dict[str, list[tuple[int, float]]]:
        """Arm (the oracle labelled as the ceiling) -> (seed size, mean test %) where the size has a finished run."""
        out = {}
        for arm, by_size in self.curve.items():
            got = [(n, 100 * s.mean) for n, s in sorted(by_size.items()) if s.mean is not None and n > 0]
            out[f"{arm} (ceiling)" if arm == CEILING else arm] = got
        return out

    def draw(self) -> None:
        """Redraw from the current curve."""
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        sizes = sorted({n for by_size in self.curve.values() for n in by_size if n > 0})
        points = self.points()
        values = [y for got in points.values() for _, y in got]
        if values:
            plt.ylim(max(0.0, min(values) - 5), min(100.0, max(values) + 5))
        else:
            plt.ylim(0, 100)
        if sizes:
            xs = [math.log2(n) for n in sizes]
            plt.xticks(xs, [str(n) for n in sizes])
            plt.xlim(min(xs) - 0.3, max(xs) + 0.3)
        plt.xlabel("seed examples (log scale)")
        for i, (label, got) in enumerate(points.items()):
            if got:
                plt.plot([math.log2(n) for n, _ in got], [y for _, y in got], label=label, marker=MARKERS[i % len(MARKERS)])
        if self.current is not None and self.current > 0 and len(sizes) > 1:
            plt.vline(math.log2(self.current))
        self.refresh()


class SavedLines(Static):
    """engine.reports.curve.labels_saved as lines: the seeds the plain curve needs to match the best augmenting arm."""

    DEFAULT_CSS = "SavedLines { height: auto; max-height: 6; padding: 0 1; }"

    def show(self, lines: list[str], current: int | None = None) -> None:
        """These LabelsSaved.show() lines, the one of the size `current` in bold."""
        text = Text("labels saved: the seeds plain needs to match the best augmenting arm (95% CI over seed sets)",
                    style="dim")
        for line in lines or ["- (needs plain or plain_tuned at every size)"]:
            bold = current is not None and line.startswith(f"n={current}:")
            text.append("\n  " + line, style="bold" if bold else "")
        self.update(text)
