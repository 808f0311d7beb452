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
