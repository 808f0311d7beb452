"""Honest comparison of two rounds (of one run or two runs on the same data) on the test split: paired difference, bootstrap interval, exact McNemar p."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from engine.store.db import Store


@dataclass(frozen=True)
class PairedDelta:
    """Accuracy of round b minus round a on the same test examples."""

    n: int
    acc_a: float
    acc_b: float
    delta: float
    ci_low: float
    ci_high: float
    b_only: int  # examples b gets right and a wrong
    a_only: int
    p_value: float

    def describe(self) -> str:
        """One plain sentence."""
        verdict = "outside" if self.ci_low > 0 or self.ci_high < 0 else "inside"
        return (f"{100 * self.delta:+.1f} points on {self.n} test examples (95% CI {100 * self.ci_low:+.1f} to "
                f"{100 * self.ci_high:+.1f}; {self.b_only} fixed, {self.a_only} broken; McNemar p = {self.p_value:.3f}) — "
                f"zero is {verdict} the interval")


def correct_by_text(store: Store, run_id: int, round_idx: int, split: str) -> dict[str, int]:
    """1/0 per scored example of a split, keyed by the example's content hash (equal across runs on the same data)."""
    hashes = {e.id: e.content_hash for e in store.examples(run_id, split=split)}
    return {hashes[p.example_id]: p.correct for p in store.predictions(run_id, round_idx)
            if p.split == split and p.example_id in hashes}


def paired_delta(store: Store, run_id: int, round_a: int, round_b: int, split: str = "test", *,
                 run_b: int | None = None, resamples: int = 2000, seed: int = 0) -> PairedDelta | None:
    """Compare round_b (of run_b, default the same run) with round_a on the examples both scored; None if none."""
    a = correct_by_text(store, run_id, round_a, split)
    b = correct_by_text(store, run_b if run_b is not None else run_id, round_b, split)
    keys = sorted(set(a) & set(b))
    if not keys:
        return None
    diffs = [b[k] - a[k] for k in keys]
    n = len(keys)
    rng = random.Random(seed)
    boots = sorted(sum(rng.choice(diffs) for _ in range(n)) / n for _ in range(resamples))
    b_only = sum(1 for d in diffs if d > 0)
    a_only = sum(1 for d in diffs if d < 0)
    return PairedDelta(n=n, acc_a=sum(a[k] for k in keys) / n, acc_b=sum(b[k] for k in keys) / n, delta=sum(diffs) / n,
                       ci_low=boots[int(0.025 * resamples)], ci_high=boots[int(0.975 * resamples) - 1],
                       b_only=b_only, a_only=a_only, p_value=mcnemar_exact(b_only, a_only))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts."""
    n = b + c
    if n == 0:
        return 1.0
    k = min(b, c)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)
