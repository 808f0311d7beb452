"""The data-efficiency curve of a sweep with seed sizes: test accuracy per arm and size, and the labels an arm saves."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

import numpy as np
from rich.text import Text

from engine.reports.run_report import fitted_table, left_then_right
from engine.reports.sweep_report import Spread, SweepReport

PLAIN_ARMS = ("plain_tuned", "plain")  # the best a user does without a teacher, first found wins
NOT_AUGMENTERS = ("plain", "plain_tuned", "oracle")  # the ceiling and the baselines are not candidates for "best arm"


def curve(report: SweepReport) -> dict[str, dict[int, Spread]]:
    """Test accuracy (mean ± sd over seed sets) per arm and seed size."""
    return {arm: {n: Spread.of([r.test_acc for r in report.of_arm(arm, n)]) for n in report.sizes} for arm in report.arms}


def needed_size(sizes: list[int], accuracies: list[float], target: float) -> float | None:
    """The seed size at which a curve (piecewise linear in log2 size, through its measured points) first reaches
    `target`; the smallest size if it is already there; None beyond the largest size measured."""
    if not sizes:
        return None
    if target <= accuracies[0]:
        return float(sizes[0])
    points = list(zip(sizes, accuracies, strict=True))
    for (n0, a0), (n1, a1) in zip(points, points[1:], strict=False):
        if a1 >= target > a0:
            share = (target - a0) / (a1 - a0)
            return float(2 ** (math.log2(n0) + share * (math.log2(n1) - math.log2(n0))))
    return None


@dataclass(frozen=True)
class LabelsSaved:
    """At one seed size: the best augmenting arm, and the seed count the plain curve needs to match it."""

    size: int
    arm: str
    accuracy: float
    plain: str
    needed: float | None  # None: beyond the largest size measured
    low: float | None  # 95% bootstrap interval of `needed` over seed sets (None: beyond)
    high: float | None

    def show(self) -> str:
        """One line for the report."""
        lead = f"n={self.size}: best {self.arm} {100 * self.accuracy:.1f}%; {self.plain} needs "
        if self.needed is None:
            return lead + "more seeds than the largest size measured (beyond the curve)"
        spread = "?" if self.low is None else f"{self.low:.0f}"
        spread += f"-{'beyond' if self.high is None else f'{self.high:.0f}'}"
        saved = self.needed - self.size
        verdict = f"{saved:+.0f} labels" if saved > 0.5 else "no labels saved"
        return lead + f"{self.needed:.0f} seeds (95% CI {spread}): {verdict}"


def _means(report: SweepReport, arm: str, rng: np.random.Generator | None) -> list[float] | None:
    """Mean test accuracy of an arm at each size (seed sets resampled with `rng`); None where a size has no run."""
    out = []
    for n in report.sizes:
        values = [r.test_acc for r in report.of_arm(arm, n) if r.test_acc is not None]
        if not values:
            return None
        if rng is not None:
            values = list(rng.choice(values, len(values)))
        out.append(statistics.fmean(values))
    return out


def labels_saved(report: SweepReport, resamples: int = 2000, seed: int = 0) -> list[LabelsSaved]:
    """Per seed size, the best augmenting arm's labels saved against the plain curve, with a seed-set bootstrap."""
    plain = next((a for a in PLAIN_ARMS if a in report.arms), None)
    if plain is None or len(report.sizes) < 2:
        return []
    base = _means(report, plain, None)
    if base is None:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for n in report.sizes:
        scored = [(statistics.fmean(v), a) for a in report.arms if a not in NOT_AUGMENTERS
                  for v in [[r.test_acc for r in report.of_arm(a, n) if r.test_acc is not None]] if v]
        if not scored:
            continue
        accuracy, arm = max(scored)
        needed = needed_size(report.sizes, base, accuracy)
        draws: list[float | None] = []
        for _ in range(resamples):
            ours = [r.test_acc for r in report.of_arm(arm, n) if r.test_acc is not None]
            theirs = _means(report, plain, rng)
            assert theirs is not None
            draws.append(needed_size(report.sizes, theirs, statistics.fmean(rng.choice(ours, len(ours)))))
        values = np.array([np.inf if d is None else d for d in draws])  # beyond the curve counts as the largest
        low = float(np.quantile(values, 0.025, method="lower"))
        high = float(np.quantile(values, 0.975, method="higher"))
        out.append(LabelsSaved(size=n, arm=arm, accuracy=accuracy, plain=plain, needed=needed,
                               low=None if math.isinf(low) else low, high=None if math.isinf(high) else high))
    return out


def curve_parts(report: SweepReport, width: int = 120) -> list[Any]:
    """The data-efficiency curve (test % per arm and seed size; oracle marked as the ceiling) and the labels saved."""
    rows = [[f"{arm} (ceiling)" if arm == "oracle" else arm,
             *(points[n].show(100) + (f" ({points[n].n})" if points[n].n else "") for n in report.sizes)]
            for arm, points in curve(report).items()]
    table = fitted_table(["arm", *(f"n={n}" for n in report.sizes)], rows, width, left_then_right(len(report.sizes) + 1),
                         title="data-efficiency curve: test % (mean ± sd over seed sets; runs) by seed size")
    lines = [Text("labels saved: the seeds the plain curve needs to match the best augmenting arm (interpolated in log "
                  "size; 95% CI from resampling seed sets)", style="bold")]
    lines += [Text("  " + saved.show()) for saved in labels_saved(report)] or [Text("  - (needs plain or plain_tuned at "
                                                                                   "every size)")]
    return [table, *lines]
