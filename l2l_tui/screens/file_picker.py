"""Pick a file or a folder: a path input above a DirectoryTree."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, DirectoryTree, Input, Static

Mode = Literal["file", "dir", "save"]


class PathPicker(ModalScreen[Path | None]):
    """Choose a file (mode 'file'), a folder ('dir') or a file name to write ('save'); dismisses with the path or None."""

    BINDINGS = [Binding("escape", "cancel", "cancel"), Binding("ctrl+u", "up", "parent folder")]

    def __init__(self, title: str, mode: Mode = "file", start: Path | None = None) -> None:
        super().__init__()
        self.title_text, self.mode = title, mode
        start = Path(start).expanduser() if start else Path.cwd()
        self.start = start
        folder = start if start.is_dir() else start.parent
        self.folder = folder if folder.is_dir() else Path.cwd()

    def compose(self) -> ComposeResult:
        """Title, path input, tree, buttons."""
        with Vertical(classes="dialog picker"):
            yield Static(self.title_text, classes="dialog-title")
            yield Input(value=str(self.start), id="picker-path")
            yield DirectoryTree(self.folder, id="picker-tree")
            with Horizontal(classes="dialog-buttons"):
                yield Button("⬆ parent", id="up")
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def on_mount(self) -> None:
        """Focus the tree (type a path into the input instead if you know it)."""
        self.query_one(DirectoryTree).focus()

    def action_cancel(self) -> None:
        """Close without a path."""
        self.dismiss(None)

    def action_up(self) -> None:
        """Show the parent folder."""
        tree = self.query_one(DirectoryTree)
        tree.path = Path(tree.path).resolve().parent
        if self.mode == "dir":
            self.query_one("#picker-path", Input).value = str(tree.path)

    def _accept(self, value: str) -> None:
        path = Path(value).expanduser()
        if path.is_dir() and self.mode != "dir":
            self.query_one(DirectoryTree).path = path
            return
        if self.mode == "file" and not path.exists():
            self.notify(f"{path}: no such file", severity="error")
            return
        self.dismiss(path)

    @on(DirectoryTree.FileSelected)
    def _file(self, event: DirectoryTree.FileSelected) -> None:
        event.stop()
        path_input = self.query_one("#picker-path", Input)
        if self.mode == "file":
            self.dismiss(event.path)
        elif self.mode == "save":
            path_input.value = str(event.path)
        else:
            path_input.value = str(event.path.parent)

    @on(DirectoryTree.DirectorySelected)
    def _dir(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        path_input = self.query_one("#picker-path", Input)
        if self.mode == "dir":
            path_input.value = str(event.path)
        elif self.mode == "save":
            path_input.value = str(event.path / Path(path_input.value).name)

    @on(Input.Submitted, "#picker-path")
    def _submitted(self, event: Input.Submitted) -> None:
        self._accept(event.value)

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "ok":
            self._accept(self.query_one("#picker-path", Input).value)
        elif event.button.id == "up":
            self.action_up()
        else:
            self.dismiss(None)
