"""The screens' common base: typed, read-only access to the app state they need, without importing the app."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, cast

from textual.screen import Screen

from l2l_tui.watchers import Watchers


class AppState(Protocol):
    """What a screen may read from the app (L2LApp satisfies it); commands go to the app as l2l_tui.messages."""

    @property
    def store_path(self) -> Path:
        """The store the app shows."""
        ...

    @property
    def frozen(self) -> bool:
        """Snapshot mode: wall-clock times and durations are hidden."""
        ...

    @property
    def watchers(self) -> Watchers:
        """The app's store watchers (a screen starts its own and stops it when it goes)."""
        ...


class AppScreen(Screen[None]):
    """A screen of the llm2llm app."""

    @property
    def l2l(self) -> AppState:
        """The app's state, typed (Textual types `self.app` as any App)."""
        return cast(AppState, self.app)

    def action_back(self) -> None:
        """Back to the previous screen, or out of a full-screen pane."""
        if self.maximized is not None:
            self.minimize()
        else:
            self.app.pop_screen()

    def action_full(self, selector: str) -> None:
        """Show one pane full screen (the key again, or escape, returns)."""
        # Not named action_maximize: Textual's palette calls that one with no argument ("Maximize" the focused widget).
        if self.maximized is not None:
            self.minimize()
        else:
            self.maximize(self.query_one(selector))
