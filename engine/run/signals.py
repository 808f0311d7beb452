"""Stopping a run politely: SIGTERM and Ctrl-C become a stop at the next safe point."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any


class StopRequested(Exception):
    """Raised between phases when the user asked the run to stop."""


class Interrupted(KeyboardInterrupt):
    """Raised at the next safe point after SIGTERM or Ctrl-C (a KeyboardInterrupt: no `except Exception` swallows it)."""


class Signals:
    """SIGTERM and SIGINT ask for a stop at the next safe point (a training step, an evaluation batch, a committed
    teacher reply, a phase boundary); a second signal stops at once. Handlers exist only in the main thread."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        """Take over SIGTERM and SIGINT (a no-op outside the main thread)."""
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._previous[signum] = signal.signal(signum, self._handle)

    def restore(self) -> None:
        """Give the handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = name
        try:  # the only output a signal handler may safely make; never a store write (one may be in flight)
            os.write(2, f"{name}: stopping at the next safe point (send it again to stop at once)\n".encode())
        except OSError:
            pass

    def check(self) -> None:
        """The safe point: raise Interrupted when a signal came."""
        if self.received is not None:
            raise Interrupted(self.received)
