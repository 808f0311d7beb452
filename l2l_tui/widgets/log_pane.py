"""The run's log, fed by the store's events; a crashed run adds the tail of its worker.log."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from engine.store.rows import Event
from l2l_tui.fmt import local_time, scrub

LEVEL_STYLE = {"warning": "yellow", "error": "bold red"}
KIND_STYLE = {"status": "bold", "phase": "cyan"}


def event_text(event: Event, frozen: bool = False) -> Text:
    """One event as a log line: time, kind, message."""
    text = Text()
    if not frozen:
        text.append(local_time(event.ts, with_date=False) + " ", style="dim")
    text.append(f"{event.kind:<6} ", style=KIND_STYLE.get(event.kind, "dim"))
    message = scrub(event.message) if frozen else event.message
    text.append(message, style=LEVEL_STYLE.get(event.level or "", ""))
    return text


class LogPane(RichLog):
    """Events of a run (teacher examples are left to the teacher pane)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wrap=True, min_width=20, max_lines=5000, auto_scroll=True, **kwargs)

    def add_events(self, events: list[Event], frozen: bool = False) -> None:
        """Append the non-teacher events among these."""
        for event in events:
            if event.kind != "teacher":
                self.write(event_text(event, frozen))

    def add_worker_tail(self, lines: list[str], path: str) -> None:
        """The last lines of a dead worker's own log."""
        self.write(Text(f"── last lines of {path} ──", style="bold red"))
        for line in lines:
            self.write(Text(line, style="red"))
