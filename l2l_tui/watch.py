"""The store watcher: a thread polling SQLite for what changed (runs, a run's rounds, events, progress, sweeps) and posting messages."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from textual.message import Message
from textual.message_pump import MessagePump

from engine.run.runs import effective_status
from engine.store.db import Store
from engine.store.rows import Event, Progress, Run
from l2l_tui.queries import dashboard_rounds, events_tail, log_tail, open_store, run_list, sweep_list, sweep_signature
from models.errors import StoreError

POLL_SECONDS = 0.5
TAIL_STATUSES = ("crashed", "failed")


class RunsChanged(Message):
    """The list of runs (or one of their statuses) changed."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.runs = runs


class RunChanged(Message):
    """The watched run's row changed; `run` is None when it was deleted. Crashed/failed runs carry their log tail."""

    def __init__(self, run_id: int, run: Run | None, status: str, log_tail: list[str]) -> None:
        super().__init__()
        self.run_id, self.run, self.status, self.log_tail = run_id, run, status, log_tail


class RoundsChanged(Message):
    """The watched run's round rows changed."""

    def __init__(self, run_id: int, rows: list[dict[str, Any]]) -> None:
        super().__init__()
        self.run_id, self.rows = run_id, rows


class EventsArrived(Message):
    """New events of the watched run (the first batch is the tail of the log)."""

    def __init__(self, run_id: int, events: list[Event], initial: bool) -> None:
        super().__init__()
        self.run_id, self.events, self.initial = run_id, events, initial


class ProgressChanged(Message):
    """The phase in flight moved (None: nothing in flight); a newer one replaces an unhandled older one."""

    def __init__(self, run_id: int, progress: Progress | None) -> None:
        super().__init__()
        self.run_id, self.progress = run_id, progress

    def can_replace(self, message: Message) -> bool:
        """Progress coalesces: only the latest of a queue of updates is handled."""
        return isinstance(message, ProgressChanged) and message.run_id == self.run_id


class SweepsChanged(Message):
    """The list of sweeps (or how far one of them got) changed."""

    def __init__(self, sweeps: list[dict[str, Any]]) -> None:
        super().__init__()
        self.sweeps = sweeps


class SweepChanged(Message):
    """Something the watched sweep shows changed (a run's round, status, the sweep's status); `exists` is False once deleted."""

    def __init__(self, sweep_id: int, exists: bool) -> None:
        super().__init__()
        self.sweep_id, self.exists = sweep_id, exists


class WatchFailed(Message):
    """A poll failed (the watcher keeps polling)."""

    def __init__(self, error: str) -> None:
        super().__init__()
        self.error = error


class StoreWatcher:
    """Polls one store every ~0.5 s from its own thread and posts what changed to a target (a screen)."""

    def __init__(self, store_path: Path, target: MessagePump, run_id: int | None = None, *, runs: bool = False,
                 sweeps: bool = False, sweep_id: int | None = None, interval: float = POLL_SECONDS, tail: int = 300) -> None:
        self.store_path = Path(store_path)
        self.target = target
        self.run_id = run_id
        self.watch_runs = runs
        self.watch_sweeps = sweeps
        self.sweep_id = sweep_id
        self.interval = interval
        self.tail = tail
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._paused = False
        self._seen: dict[str, Any] = {}
        self._event_id: int | None = None

    # control ------------------------------------------------------------------------------------
    def stop(self) -> None:
        """End the polling loop (returns at once; the thread exits within one interval)."""
        self._stop.set()
        self._wake.set()

    def pause(self, paused: bool) -> None:
        """Skip polls while the target is hidden."""
        self._paused = paused
        if not paused:
            self.poke()

    def poke(self) -> None:
        """Poll now instead of at the end of the interval (after the app itself wrote something)."""
        self._wake.set()

    # polling ------------------------------------------------------------------------------------
    def _changed(self, key: str, value: Any) -> bool:
        if key in self._seen and self._seen[key] == value:
            return False
        self._seen[key] = value
        return True

    def poll(self, store: Store) -> list[Message]:
        """One look at the store: the messages for everything that changed since the last look."""
        out: list[Message] = []
        if self.watch_runs:
            runs = run_list(store)
            if self._changed("runs", runs):
                out.append(RunsChanged(runs))
        if self.watch_sweeps:
            sweeps = sweep_list(store)
            if self._changed("sweeps", sweeps):
                out.append(SweepsChanged(sweeps))
        if self.sweep_id is not None:
            signature = sweep_signature(store, self.sweep_id)
            if self._changed("sweep", signature):
                out.append(SweepChanged(self.sweep_id, signature is not None))
        if self.run_id is None:
            return out
        try:
            run = store.run(self.run_id)
        except StoreError:
            if self._changed("run", None):
                out.append(RunChanged(self.run_id, None, "deleted", []))
            return out
        status = effective_status(run)
        tail = log_tail(self.store_path, self.run_id) if status in TAIL_STATUSES else []
        if self._changed("run", (status, run.updated, run.error, run.best_round, tail)):
            out.append(RunChanged(self.run_id, run, status, tail))
        rows = dashboard_rounds(store, self.run_id)
        if self._changed("rounds", rows):
            out.append(RoundsChanged(self.run_id, rows))
        if self._event_id is None:
            events = events_tail(store, self.run_id, self.tail)
            out.append(EventsArrived(self.run_id, events, initial=True))
        else:
            events = store.events(self.run_id, after_id=self._event_id)
            if events:
                out.append(EventsArrived(self.run_id, events, initial=False))
        if events:
            self._event_id = events[-1].id
        elif self._event_id is None:
            self._event_id = 0
        progress = store.progress(self.run_id)
        if self._changed("progress", progress):
            out.append(ProgressChanged(self.run_id, progress))
        return out

    def run(self) -> None:
        """The thread body: poll, post, sleep, until stopped."""
        store = open_store(self.store_path)
        try:
            while not self._stop.is_set():
                if not self._paused:
                    try:
                        messages = self.poll(store)
                    except Exception as err:  # a locked or half-migrated store must not kill the watcher
                        messages = [WatchFailed(f"{type(err).__name__}: {err}")]
                    for message in messages:
                        self.target.post_message(message)
                self._wake.wait(self.interval)
                self._wake.clear()
        finally:
            store.close()
