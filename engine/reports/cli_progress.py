"""A rich progress bar with ETA for the phase in flight, plus event lines above it."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn, TimeRemainingColumn

TEACHER_SAMPLE = 3  # teacher examples echoed per augment phase


class CliProgress:
    """Shows one bar per phase; a new phase replaces the previous bar."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.bar = Progress(TextColumn("[bold]{task.description:<8}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True)
        self.task: TaskID | None = None
        self.phase = ""
        self.teacher_lines = 0

    def __enter__(self) -> CliProgress:
        self.bar.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.bar.stop()

    def update(self, phase: str, done: int, total: int) -> None:
        """Move the bar of `phase` (starting a new one when the phase changes)."""
        if phase != self.phase or self.task is None:
            if self.task is not None:
                self.bar.remove_task(self.task)
            self.task = self.bar.add_task(phase, total=total)
            self.phase = phase
        self.bar.update(self.task, completed=done, total=total)

    def log(self, message: str, kind: str = "info") -> None:
        """Print an event line above the bar; of a batch of teacher examples only the first few, one line each."""
        if kind != "teacher":
            self.teacher_lines = 0
            self.console.print(message, highlight=False)
            return
        self.teacher_lines += 1
        if self.teacher_lines <= TEACHER_SAMPLE:
            self.console.print(f"  teacher: {message}", highlight=False, no_wrap=True, overflow="ellipsis")
        elif self.teacher_lines == TEACHER_SAMPLE + 1:
            self.console.print("  teacher: … (every example is in the store: `l2l` → examples)", highlight=False)
