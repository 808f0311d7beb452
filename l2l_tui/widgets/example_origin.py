"""Where a synthetic example came from when no teacher wrote it: a real pool row (its file and row), an eda edit, an
oracle row; shown under the example's head line in the example browser."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.widgets import Static

from l2l_tui.widgets.example_view import ExampleView, example_renderable


def origin_line(ex: dict[str, Any] | None) -> Text | None:
    """One line on the example's origin (examples.meta.origin); None for a seed, evaluation or teacher-written row."""
    meta = ex.get("meta") if ex is not None else None
    if not isinstance(meta, dict) or not meta.get("origin"):
        return None
    origin = meta["origin"]
    line = Text.assemble(("made by: ", "dim"), (str(origin), "bold cyan"))
    if origin == "pool":
        row = meta.get("pool_row")
        where = f"row {row} (0-based) of " if row is not None else ""
        line.append(f" · real unlabeled {where}{meta.get('pool_file') or 'the pool file'}; labelled with the miss's label, "
                    "which the teacher's blind verification checks")
    elif origin == "eda":
        line.append(" · word edits of the miss (swaps, deletions, insertions, replacements), no model")
    elif origin == "oracle":
        line.append(" · a real labelled row no split used, with its own label (the ceiling: what real labels give)")
    return line


def sourced_renderable(ex: dict[str, Any] | None) -> Group | Text:
    """example_renderable with the origin line under the head line."""
    shown = example_renderable(ex)
    line = origin_line(ex)
    if line is None or not isinstance(shown, Group):
        return shown
    parts = list(shown.renderables)
    return Group(*parts[:1], line, *parts[1:])


class SourcedExampleView(ExampleView):
    """The example view with the origin of a row no teacher wrote."""

    def show(self, ex: dict[str, Any] | None) -> None:
        """Show this example."""
        self.query_one("#example-text", Static).update(sourced_renderable(ex))
        self.scroll_home(animate=False)
