"""The base of the app's tables: a read-only row table that creates its columns and sizes them to every new row."""

from __future__ import annotations

from typing import Any

from textual.coordinate import Coordinate
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey


class RowTable(DataTable):
    """Row cursor, zebra stripes, COLUMNS (label, key) created on mount, columns sized to rows however they arrive."""

    COLUMNS: tuple[tuple[str, str], ...] = ()

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._measure_posted = False

    def on_mount(self) -> None:
        """Create the columns."""
        for label, key in self.COLUMNS:
            self.add_column(label, key=key)

    def fill(self, rows: list[tuple[str, list[Any]]], scroll: bool = False) -> None:
        """Replace the rows (key, cells), keeping the cursor on the same key when it is still there."""
        current = self.selected_key
        self.clear()
        for key, cells in rows:
            self.add_row(*cells, key=key)
        keys = [k for k, _ in rows]
        if current in keys:
            self.move_cursor(row=keys.index(current), scroll=scroll)

    @property
    def selected_key(self) -> str | None:
        """The row key under the cursor."""
        if not self.row_count or not 0 <= self.cursor_row < self.row_count:
            return None
        return self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0)).row_key.value

    @property
    def selected_int(self) -> int | None:
        """The row key under the cursor, as the id it is."""
        key = self.selected_key
        return int(key) if key is not None else None

    def add_row(self, *cells: Any, **kwargs: Any) -> RowKey:
        """Add a row; the table measures it soon."""
        self._measure_soon()
        return super().add_row(*cells, **kwargs)

    def update_cell(self, *args: Any, **kwargs: Any) -> None:
        """Update a cell; the table measures it soon."""
        self._measure_soon()
        super().update_cell(*args, **kwargs)

    def _measure_soon(self) -> None:
        # DataTable sizes columns to new or changed cells on its own idle, which only follows a message to it: rows
        # added from another widget's handler kept header-wide columns until a key press (textual#4470). So post one
        # message to the table per batch of changes.
        if not self._measure_posted:
            self._measure_posted = True
            self.call_later(self._measured)

    def _measured(self) -> None:
        self._measure_posted = False
        # The idle after this message measures the rows; rows drawn before it stay in a render cache whose key holds no
        # column widths, so redraw from scratch once that idle and its refresh are done.
        self.call_after_refresh(self.notify_style_update)
