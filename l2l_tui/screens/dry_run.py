"""The dry-run preview: rendered prompts with their loss masks, the teacher prompt and schema, sizes, resolved config."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static, TabbedContent, TabPane


def prompts_renderable(sections: dict[str, Any]) -> Group:
    """Student prompts: loss-bearing tokens highlighted (or plain text when the tokenizer is unavailable)."""
    parts: list[Any] = []
    for i, (prompt, response) in enumerate(sections["pairs"]):
        body: Any = Text(prompt + response)
        if i < len(sections["masks"]):
            text, n, n_loss = sections["masks"][i]
            body = Group(text, Text(f"{n} tokens, loss on {n_loss} (bold green); dim tokens are prompt, no loss", style="italic"))
        parts.append(Panel(body, title=f"student example {i + 1}", title_align="left"))
    if "mask_error" in sections:
        parts.append(Text(sections["mask_error"], style="yellow"))
    return Group(*parts)


def teacher_renderable(sections: dict[str, Any]) -> Group:
    """The teacher's messages for the first seed example, and its output schema."""
    parts: list[Any] = [Panel(Text(m["content"]), title=m["role"], title_align="left") for m in sections["teacher"]]
    parts.append(Panel(Text(json.dumps(sections["teacher_schema"], indent=1)), title="output schema (constrained decoding)",
                       title_align="left"))
    return Group(*parts)


def sizes_renderable(sections: dict[str, Any]) -> Table:
    """Sizes and estimates."""
    table = Table("size", "value", box=None, padding=(0, 2))
    for key, value in sections["sizes"].items():
        table.add_row(key, str(value))
    return table


class DryRunScreen(Screen[None]):
    """What a run would do, before anything is trained or written."""

    BINDINGS = [Binding("escape", "app.pop_screen", "back")]

    def __init__(self, sections: dict[str, Any]) -> None:
        super().__init__()
        self.sections = sections

    def compose(self) -> ComposeResult:
        """One tab per part of the dry run."""
        yield Header()
        with TabbedContent(id="dry-tabs"):
            with TabPane("prompts & loss masks", id="tab-prompts"):
                with VerticalScroll():
                    yield Static(prompts_renderable(self.sections))
            with TabPane("teacher", id="tab-teacher"):
                with VerticalScroll():
                    yield Static(teacher_renderable(self.sections))
            with TabPane("sizes", id="tab-sizes"):
                with VerticalScroll():
                    yield Static(sizes_renderable(self.sections))
            with TabPane("resolved config", id="tab-config"):
                with VerticalScroll():
                    yield Static(Syntax(self.sections["config"], "toml", theme="ansi_dark"))
        yield Footer()

    def on_mount(self) -> None:
        """Say what this is."""
        self.sub_title = "dry run: nothing trained or written"
