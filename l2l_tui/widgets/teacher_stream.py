"""Examples the teacher writes, as they arrive (events of kind 'teacher')."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from engine.store.rows import Event


def teacher_text(event: Event) -> Text:
    """One generated example: its parent miss, then its fields (raw text when the stored JSON was cut)."""
    data = event.data
    text = Text()
    text.append(f"from #{data.get('parent', '?')} ", style="bold magenta")
    try:
        item = json.loads(event.message)
    except (TypeError, ValueError):
        item = None
    if isinstance(item, dict):
        for i, (key, value) in enumerate(item.items()):
            text.append(("\n  " if i else "") + f"{key}: ", style="bold")
            text.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    else:
        text.append(str(event.message))
    return text


class TeacherStream(RichLog):
    """A scrolling pane of the teacher's new examples."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wrap=True, min_width=20, max_lines=2000, auto_scroll=True, **kwargs)
        self.count = 0

    def add_events(self, events: list[Event]) -> None:
        """Append the teacher events among these."""
        for event in events:
            if event.kind == "teacher":
                self.count += 1
                self.write(teacher_text(event))
        self.border_subtitle = f"{self.count} shown"
