"""Full text of one example: provenance, reason, the teacher's requested label and diagnosis, input, target, answer,
choices and the student's answers round by round."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static


def example_renderable(ex: dict[str, Any] | None) -> Group | Text:
    """An example as rich text (predictions: a list of prediction rows or a {round: row} dict)."""
    if ex is None:
        return Text("no example selected", style="dim")
    head = Text.assemble((f"#{ex['id']} ", "bold"), f"{ex['split']} · ")
    if ex["status"] == "rejected":
        head.append(f"rejected: {ex.get('reason') or '?'}", style="bold red")
    else:
        head.append(ex["status"] or "kept", style="green" if ex["status"] == "kept" else "yellow")
    if ex.get("origin_round") is not None:
        head.append(f" · written in round {ex['origin_round']} from miss #{ex['parent_id']}")
    if ex.get("children"):
        head.append(f" · {ex['children']} children")
    parts: list[Any] = [head]
    meta: dict[str, Any] = ex["meta"] if isinstance(ex.get("meta"), dict) else {}
    requested = meta.get("requested_label")
    if requested is not None:
        line = Text.assemble(("requested label: ", "dim"), str(requested))
        if ex.get("answer") is not None and str(requested) != str(ex["answer"]):
            line.append(f" (written as {ex['answer']})", style="yellow")
        parts.append(line)
    if meta.get("what_made_it_hard"):
        parts.append(Text.assemble(("teacher's diagnosis of the miss: ", "dim"), str(meta["what_made_it_hard"])))
    for label, key in (("input", "input"), ("target (trained on)", "target"), ("gold answer", "answer")):
        parts.append(Text(label, style="bold underline"))
        parts.append(Text(str(ex.get(key) or "")))
    if ex.get("choices"):
        parts.append(Text("choices", style="bold underline"))
        parts.append(Text("\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(ex["choices"]))))
    predictions = ex.get("predictions") or []
    parts.append(Text("student's answers", style="bold underline"))
    if not predictions:
        parts.append(Text("not evaluated" + (" (synthetic examples are not re-evaluated)" if ex["split"] == "synthetic" else ""),
                          style="dim"))
    for p in predictions:
        mark, style = ("✓ correct", "green") if p["correct"] else ("✗ wrong", "red")
        line = Text.assemble((f"round {p['round']}: ", "bold"), (mark, style), f" · extracted {p['extracted']!r}")
        if p.get("confidence") is not None:
            line.append(f" · p={p['confidence']:.2f}")
        parts.append(line)
        parts.append(Text("  " + (p["output"] or "").strip(), style="dim"))
    return Group(*parts)


class ExampleView(VerticalScroll):
    """A scrollable full-text view of one example."""

    DEFAULT_CSS = "ExampleView > Static { width: 1fr; }"

    def compose(self) -> ComposeResult:
        """One Static."""
        yield Static(example_renderable(None), id="example-text")

    def show(self, ex: dict[str, Any] | None) -> None:
        """Show this example."""
        self.query_one("#example-text", Static).update(example_renderable(ex))
        self.scroll_home(animate=False)
