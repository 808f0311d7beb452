"""CPU threads for torch and llama.cpp, fitted to the cores that other processes leave free, measured as the work goes."""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import psutil

# Below this many cores of other work a core still counts as free: editors, shells and the kernel's own ticks.
IDLE_NOISE = 0.2
# How often a running phase looks again (seconds): often enough to follow a build that starts or ends, rarely
# enough that the look (a few /proc reads) costs nothing.
RECHECK_SECONDS = 2.0


def cores() -> int:
    """Cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _busy_total() -> float:
    """CPU seconds the whole machine has spent busy since boot."""
    t = psutil.cpu_times()
    return float(t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0))


def _busy_own() -> float:
    """CPU seconds this process and its live children have spent (the teacher's process, DDP workers)."""
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:  # a child that ended between the listing and the read
            pass
    return total


def threads_for(busy_elsewhere: float, n_cores: int) -> int:
    """Threads that fit beside `busy_elsewhere` cores of other work: every core another process keeps partly busy is
    left to it, since spinning threads that wait at a barrier for a descheduled peer stall the whole step."""
    taken = max(0, math.ceil(busy_elsewhere - IDLE_NOISE))
    return max(1, min(n_cores, n_cores - taken))


@dataclass
class Reading:
    """One look at the machine: cores busy with other work and the threads that fit beside it."""

    busy_elsewhere: float
    threads: int


class CoreMonitor:
    """Watches the cores other processes use, between two of its own looks (no sleeping once started)."""

    def __init__(self, fixed: int | None = None) -> None:
        self.fixed = fixed  # a config value wins over any measurement
        self.n_cores = cores()
        self._at = time.monotonic()
        self._total = _busy_total()
        self._own = _busy_own()
        self.seen: set[int] = set()

    def look(self) -> Reading:
        """Other processes' cores since the last look, and the threads that fit now."""
        at, total, own = time.monotonic(), _busy_total(), _busy_own()
        elapsed = max(at - self._at, 1e-3)
        elsewhere = max(0.0, ((total - self._total) - (own - self._own)) / elapsed)
        self._at, self._total, self._own = at, total, own
        threads = self.fixed or threads_for(elsewhere, self.n_cores)
        self.seen.add(threads)
        return Reading(round(elsewhere, 2), threads)

    def first(self, window: float = 0.5) -> Reading:
        """A look over a short quiet window, for the phase's starting thread count."""
        if self.fixed:
            self.seen.add(self.fixed)
            return Reading(0.0, self.fixed)
        self.look()
        time.sleep(window)
        return self.look()

    def due(self) -> bool:
        """Whether enough time has passed since the last look for another to mean something."""
        return self.fixed is None and time.monotonic() - self._at >= RECHECK_SECONDS


def describe(reading: Reading, fixed: int | None, n_cores: int) -> str:
    """How the thread count was chosen, in a few words."""
    if fixed:
        return f"{fixed} thread{'s' if fixed > 1 else ''} (set in the config)"
    return (f"{reading.threads} of {n_cores} threads ({reading.busy_elsewhere:.1f} cores busy elsewhere; "
            "followed as the phase runs)")


class TorchThreads:
    """Keeps torch's intra-op threads fitted to the free cores: set at the phase's start, looked at again between steps."""

    def __init__(self, fixed: int | None = None) -> None:
        self.monitor = CoreMonitor(fixed)
        self.reading = self.monitor.first()
        self._apply(self.reading.threads)

    def _apply(self, n: int) -> None:
        import torch

        if torch.get_num_threads() != n:
            torch.set_num_threads(n)

    def step(self) -> None:
        """Between two steps or batches: follow the free cores if it is time to look."""
        if self.monitor.due():
            self.reading = self.monitor.look()
            self._apply(self.reading.threads)

    def describe(self) -> str:
        """The starting choice, in words."""
        return describe(self.reading, self.monitor.fixed, self.monitor.n_cores)
