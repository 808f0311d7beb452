"""The screens' common base: typed access to the app they run in."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.screen import Screen

if TYPE_CHECKING:
    from l2l_tui.app import L2LApp


class AppScreen(Screen[None]):
    """A screen of the llm2llm app."""

    @property
    def l2l(self) -> L2LApp:
        """The app, typed (Textual types `self.app` as any App)."""
        return cast("L2LApp", self.app)

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
