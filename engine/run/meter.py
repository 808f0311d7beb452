"""Per-phase measurements: wall time, peak RSS (sampled) and peak CUDA memory."""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

import psutil


class PhaseMeter:
    """Context manager measuring one phase; `result()` gives seconds and peak memory in MB."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.proc = psutil.Process()
        self.peak_rss = 0
        self.start = 0.0
        self.seconds = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.marks: dict[str, float] = {}

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)

    def __enter__(self) -> PhaseMeter:
        self.start = time.perf_counter()
        self.peak_rss = self.proc.memory_info().rss
        _reset_cuda_peak()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def mark(self, name: str, seconds: float) -> None:
        """Add seconds spent in a named sub-step (e.g. model loading)."""
        self.marks[name] = self.marks.get(name, 0.0) + seconds

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
        self.seconds = time.perf_counter() - self.start

    def result(self) -> dict[str, Any]:
        """Seconds, peak RSS and (on CUDA) peak VRAM of the phase, plus named sub-steps."""
        out: dict[str, Any] = {"seconds": round(self.seconds, 3), "peak_rss_mb": round(self.peak_rss / 2**20, 1)}
        vram = _cuda_peak_mb()
        if vram is not None:
            out["peak_vram_mb"] = vram
        out.update({f"{k}_seconds": round(v, 3) for k, v in self.marks.items()})
        return out


def _reset_cuda_peak() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
    except ImportError:
        pass


def _cuda_peak_mb() -> float | None:
    try:
        import torch

        if torch.cuda.is_available():
            return round(torch.cuda.max_memory_allocated() / 2**20, 1)
    except ImportError:
        pass
    return None
