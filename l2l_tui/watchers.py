"""The app's store watchers: started for the screens that follow the store, poked after the app writes, stopped on exit."""

from __future__ import annotations

import threading
from pathlib import Path

from textual.message_pump import MessagePump

from l2l_tui.watch import StoreWatcher


class Watchers:
    """Every polling thread of one store, so the app can poke or stop them all."""

    def __init__(self, store_path: Path, interval: float) -> None:
        self.store_path = store_path
        self.interval = interval
        self.running: set[StoreWatcher] = set()

    def start(self, target: MessagePump, *, run_id: int | None = None, runs: bool = False, sweeps: bool = False,
              sweep_id: int | None = None) -> StoreWatcher:
        """A polling thread posting store changes to `target`."""
        watcher = StoreWatcher(self.store_path, target, run_id, runs=runs, sweeps=sweeps, sweep_id=sweep_id,
                               interval=self.interval)
        self.running.add(watcher)
        name = f"run-{run_id}" if run_id is not None else f"sweep-{sweep_id}" if sweep_id is not None else "list"
        threading.Thread(target=watcher.run, name=f"l2l-watch-{name}", daemon=True).start()
        return watcher

    def stop(self, watcher: StoreWatcher) -> None:
        """End a watcher thread."""
        watcher.stop()
        self.running.discard(watcher)

    def poke(self) -> None:
        """Poll now (after the app wrote to the store)."""
        for watcher in self.running:
            watcher.poke()

    def stop_all(self) -> None:
        """End every watcher thread."""
        for watcher in list(self.running):
            self.stop(watcher)
