"""The help screen: a short guide and the keys of each screen (the bindings the app hands it)."""

from __future__ import annotations

from typing import Any

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

GUIDE = (
    "llm2llm teaches a small student model a task from a few examples: each round it is fine-tuned, evaluated on "
    "the seed examples, and a teacher model writes new examples modelled on each miss (LLM2LLM, Lee et al. 2024).\n"
    "Runs are separate worker processes: quitting the app leaves them running; reopening shows them live again. "
    "Stop asks a run to finish the phase in flight and exit; resume continues from the last finished phase.\n"
    "Sweeps (`l2l sweep CONFIG`) run every arm over several seed sets; w on the runs screen lists them, with each arm's "
    "accuracy, paired test deltas against plain fine-tuning and the paper's recipe, and the report files.\n"
    "Ctrl+P opens the command palette (every main action is there too). The mouse works everywhere.\n"
)
KEY_NAMES = {"question_mark": "?", "slash": "/", "escape": "esc", "enter": "enter"}


def _keys(bindings: list[Any]) -> list[tuple[str, str]]:
    out = []
    for b in bindings:
        binding = b if isinstance(b, Binding) else Binding(*b)
        if binding.show or binding.description:
            keys = ", ".join(KEY_NAMES.get(k.strip(), k.strip()) for k in binding.key.split(","))
            out.append((keys, binding.description or binding.action))
    return out


def key_table(sections: list[tuple[str, list[Any]]]) -> Table:
    """The keys of each (name, bindings) section, then the palette's."""
    table = Table("screen", "key", "does", box=None, padding=(0, 2))
    for name, bindings in sections:
        for i, (keys, does) in enumerate(_keys(list(bindings))):
            table.add_row(Text(name if i == 0 else "", style="bold"), Text(keys, style="cyan"), does)
        table.add_row("", "", "")
    table.add_row(Text("everywhere", style="bold"), Text("ctrl+p", style="cyan"), "command palette")
    return table


class HelpScreen(ModalScreen[None]):
    """Keys of every screen and a short guide."""

    BINDINGS = [Binding("escape,q,question_mark", "close", "close")]

    def __init__(self, sections: list[tuple[str, list[Any]]]) -> None:
        super().__init__()
        self.sections = sections  # (screen name, its bindings), handed in by the app: help imports no screen

    def compose(self) -> ComposeResult:
        """Guide and key table."""
        with VerticalScroll(classes="dialog help"):
            yield Static(Text("llm2llm — help", style="bold"), classes="dialog-title")
            yield Static(GUIDE)
            yield Static(key_table(self.sections))
            yield Static(Text("escape closes this help", style="dim"))

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)
