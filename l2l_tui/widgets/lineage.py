"""Lineage tree: a seed example, the student's answer to it each round, and the children the teacher wrote from each miss."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from engine.store.rows import Prediction, StoredExample
from l2l_tui.queries import LineageNode, example_view_data
from l2l_tui.widgets.example_table import one_line


def example_label(ex: StoredExample) -> Text:
    """Tree label of an example."""
    text = Text.assemble((f"#{ex.id} ", "bold"), (f"{ex.split} ", "cyan"))
    if ex.status == "rejected":
        text.append(f"rejected ({ex.reason or '?'}) ", style="red")
    elif ex.split == "synthetic":
        text.append(f"{ex.status} ", style="green" if ex.status == "kept" else "yellow")
    text.append(one_line(ex.input, 70))
    return text


def round_label(idx: int, prediction: Prediction | None, n_children: int) -> Text:
    """Tree label of what happened to an example in one round."""
    text = Text(f"round {idx}: ", style="bold")
    if prediction is None:
        text.append("not evaluated", style="dim")
    else:
        mark, style = ("✓ correct", "green") if prediction.correct else ("✗ miss", "red")
        text.append(mark, style=style)
        text.append(f" · student answered {one_line(prediction.extracted if prediction.extracted is not None else '∅', 24)!s}")
    if n_children:
        text.append(f" → teacher wrote {n_children}", style="magenta")
    return text


class LineageTree(Tree[dict[str, Any]]):
    """The family tree of one seed example; node data is an example (with its predictions) or a prediction."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("lineage", **kwargs)
        self.show_root = True
        self.by_example: dict[int, TreeNode[dict[str, Any]]] = {}

    def show(self, root: LineageNode, focus_id: int | None = None) -> None:
        """Build the tree and put the cursor on `focus_id` (an example id)."""
        self.clear()
        self.by_example = {}
        self.root.set_label(example_label(root.example))
        self.root.data = _node_data(root)
        self.by_example[root.example.id] = self.root
        self._add(self.root, root)
        self.root.expand_all()
        target = self.by_example.get(focus_id) if focus_id is not None else None
        if target is not None:
            self.call_after_refresh(self.move_cursor, target)

    def _add(self, parent: TreeNode[dict[str, Any]], node: LineageNode) -> None:
        for idx in node.rounds():
            kids = node.children_of_round(idx)
            pred = node.predictions.get(idx)
            branch = parent.add(round_label(idx, pred, len(kids)), data={**_node_data(node), "_round": idx},
                                allow_expand=bool(kids))
            for kid in kids:
                child = branch.add(example_label(kid.example), data=_node_data(kid), allow_expand=bool(kid.rounds()))
                self.by_example[kid.example.id] = child
                self._add(child, kid)

    def count(self) -> int:
        """Examples in the tree."""
        return len(self.by_example)


def _node_data(node: LineageNode) -> dict[str, Any]:
    return example_view_data(node.example, list(node.predictions.values()), len(node.children))
