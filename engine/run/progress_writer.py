"""Progress of a phase, coalesced into a few store writes per second."""

from __future__ import annotations

import time
from collections.abc import Callable

from engine.run.faults import fault_point
from engine.store.db import Store

Progress = Callable[[str, int, int], None]


class ProgressWriter:
    """Coalesces progress callbacks into at most a few store writes per second; each call is a safe point (and, with
    a unit, a fault point: 'step3', 'batch2')."""

    def __init__(self, store: Store, run_id: int, round_idx: int, phase: str, echo: Progress | None,
                 min_interval: float = 0.5, unit: str | None = None, safe_point: Callable[[], None] | None = None) -> None:
        self.store, self.run_id, self.round_idx, self.phase = store, run_id, round_idx, phase
        self.echo = echo
        self.min_interval = min_interval
        self.started = time.time()
        self.last = 0.0
        self.unit, self.calls = unit, 0
        self.safe_point = safe_point

    def __call__(self, done: int, total: int, message: str = "") -> None:
        t = time.monotonic()
        self.calls += 1
        if self.unit is not None:
            fault_point(self.phase, self.round_idx, f"{self.unit}{self.calls}")
        if self.echo is not None:
            self.echo(self.phase, done, total)
        if done >= total or t - self.last >= self.min_interval:
            self.last = t
            self.store.set_progress(self.run_id, self.round_idx, self.phase, done, total, message, started=self.started)
        if self.safe_point is not None:
            self.safe_point()
