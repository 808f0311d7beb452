"""A screen that owns a store watcher: polling pauses while the screen is covered and stops when it goes."""

from __future__ import annotations

from l2l_tui.screens.base import AppScreen
from l2l_tui.watch import StoreWatcher


class WatchedScreen(AppScreen):
    """Base of the screens that follow the store; subclasses set `self.watcher` in on_mount."""

    watcher: StoreWatcher | None = None

    def on_unmount(self) -> None:
        """Stop watching."""
        if self.watcher is not None:
            self.l2l.watchers.stop(self.watcher)

    def on_screen_suspend(self) -> None:
        """Covered by another screen: stop polling."""
        if self.watcher is not None:
            self.watcher.pause(True)

    def on_screen_resume(self) -> None:
        """Visible again: poll at once."""
        if self.watcher is not None:
            self.watcher.pause(False)
