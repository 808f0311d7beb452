"""The phase in flight: a progress bar with elapsed time and ETA computed from the store's progress row."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Label, ProgressBar

from engine.store.rows import Progress
from l2l_tui.fmt import FROZEN, eta, span

PHASE_WORDS = {"train": "training", "eval": "evaluating", "augment": "teacher writing", "filter": "filtering"}


def progress_line(progress: Progress | None, status: str, frozen: bool = False) -> str:
    """The words beside the bar: round, phase, counts, message, elapsed and ETA (or why nothing moves)."""
    if progress is None or status == "finished":  # the engine clears the row only after freeing its models
        idle = {"running": "starting…", "stopping": "stopping after the phase in flight…", "finished": "finished",
                "stopped": "stopped — resume with r", "crashed": "crashed — resume with r", "failed": "failed — see the log",
                "created": "not started — start with r"}
        return idle.get(status, status)
    phase = PHASE_WORDS.get(progress.phase, progress.phase)
    where = f"round {progress.round} · {phase} · {progress.done}/{progress.total}"
    if status not in ("running", "stopping"):  # a row left behind by a worker that died mid-phase
        return f"{status} in {where} — r resumes (the phase restarts)"
    parts = [where]
    if progress.message:
        parts.append(progress.message)
    elapsed, remaining = eta(progress)
    if remaining is not None and not frozen:
        remaining = max(0.0, remaining - max(0.0, time.time() - progress.updated))
    parts.append(f"elapsed {span(elapsed, frozen)}")
    parts.append(f"ETA {FROZEN if frozen else span(remaining)}")
    return " · ".join(parts)


class PhaseProgress(Horizontal):
    """Bar + text for the phase in flight; idle text when nothing runs."""

    DEFAULT_CSS = """
    PhaseProgress { height: 1; }
    PhaseProgress ProgressBar { width: 44; }
    PhaseProgress Label { width: 1fr; padding: 0 1; }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.progress: Progress | None = None
        self.status = "created"
        self.frozen = False

    def compose(self) -> ComposeResult:
        """A bar and a label."""
        yield ProgressBar(total=None, show_eta=False, id="phase-bar")
        yield Label("", id="phase-text")

    def on_mount(self) -> None:
        """Tick the ETA once a second between store updates."""
        self.set_interval(1.0, self._tick)

    def show(self, progress: Progress | None, status: str, frozen: bool = False) -> None:
        """Show a progress row (or none) for a run in `status`."""
        self.progress, self.status, self.frozen = progress, status, frozen
        bar = self.query_one(ProgressBar)
        if progress is None:
            done = status == "finished"
            bar.update(total=1, progress=1 if done else 0)
        else:
            bar.update(total=max(progress.total, 1), progress=progress.done)
        self._tick()

    def _tick(self) -> None:
        self.query_one("#phase-text", Label).update(progress_line(self.progress, self.status, self.frozen))
