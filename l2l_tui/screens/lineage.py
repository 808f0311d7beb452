"""Lineage of one example: its seed ancestor, the student's answer each round, and the teacher's children of each miss."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Footer, Header, Label, Tree

from l2l_tui.queries import LineageNode, lineage, open_store
from l2l_tui.screens.base import AppScreen
from l2l_tui.widgets.example_view import ExampleView
from l2l_tui.widgets.lineage import LineageTree


class LineageLoaded(Message):
    """The family tree was read from the store."""

    def __init__(self, root: LineageNode) -> None:
        super().__init__()
        self.root = root


class LineageScreen(AppScreen):
    """Tree on the left, the node's example in full on the right."""

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("v", "full('#lineage-view')", "full text"),
        Binding("p", "parent", "parent"),
    ]

    def __init__(self, run_id: int, example_id: int) -> None:
        super().__init__()
        self.run_id, self.example_id = run_id, example_id
        self.loaded = False

    @property
    def current_run_id(self) -> int:
        """The run this lineage belongs to."""
        return self.run_id

    def compose(self) -> ComposeResult:
        """Title, tree, view."""
        yield Header()
        yield Label("reading lineage…", id="lineage-title")
        with Horizontal(id="lineage-main"):
            yield LineageTree(id="lineage-tree")
            yield ExampleView(id="lineage-view")
        yield Footer()

    def on_mount(self) -> None:
        """Read the tree in a worker thread."""
        self.sub_title = f"run {self.run_id} · lineage of #{self.example_id}"
        self.query_one("#lineage-view").border_title = "example"
        self.query_one(LineageTree).focus()
        self._load()

    @work(thread=True, exclusive=True, exit_on_error=False)
    def _load(self) -> None:
        store = open_store(self.l2l.store_path)
        try:
            root = lineage(store, self.example_id)
        finally:
            store.close()
        self.post_message(LineageLoaded(root))

    @on(LineageLoaded)
    def _loaded(self, event: LineageLoaded) -> None:
        tree = self.query_one(LineageTree)
        tree.show(event.root, self.example_id)
        root = event.root.example
        misses = sum(1 for p in event.root.predictions.values() if not p.correct)
        self.query_one("#lineage-title", Label).update(
            f"seed #{root.id}: missed in {misses} of {len(event.root.predictions)} evaluated rounds · "
            f"{tree.count() - 1} descendants written by the teacher · selected #{self.example_id}")
        self.query_one(ExampleView).show(tree.root.data)
        self.loaded = True

    @on(Tree.NodeHighlighted, "#lineage-tree")
    def _highlighted(self, event: Tree.NodeHighlighted) -> None:
        if event.node.data is not None:
            self.query_one(ExampleView).show(event.node.data)

    def action_parent(self) -> None:
        """Move the cursor to the parent node."""
        tree = self.query_one(LineageTree)
        node = tree.cursor_node
        if node is not None and node.parent is not None:
            tree.move_cursor(node.parent)
