"""The example browser: every example of a run, filtered by split, round, who made it (teacher, pool, eda, oracle),
correctness, status and reason (with counts)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import DataTable, Footer, Header, Input, Label, Select

from engine.store.rows import ExampleListing, ExampleOptions
from l2l_tui.queries import EXAMPLE_LIMIT, ExampleFilter, example_detail, filter_examples, filter_options, open_store
from l2l_tui.screens.base import AppScreen
from l2l_tui.widgets.example_origin import SourcedExampleView
from l2l_tui.widgets.example_table import ExampleTable
from l2l_tui.widgets.example_view import ExampleView

FILTERS = ("split", "origin_round", "origin", "eval_round", "result", "status", "reason")
PROMPTS = {"split": "split", "origin_round": "written in", "origin": "written by", "eval_round": "answer: last",
           "result": "✓ / ✗", "status": "status", "reason": "reason"}
COUNTED = {"reason": "reason_counts", "origin": "origin_counts"}  # filters whose values show their example counts


class OptionsLoaded(Message):
    """The values each filter can take."""

    def __init__(self, options: ExampleOptions) -> None:
        super().__init__()
        self.options = options


class ExamplesLoaded(Message):
    """Rows for the current filter."""

    def __init__(self, flt: ExampleFilter, rows: list[ExampleListing], total: int, eval_round: int | None) -> None:
        super().__init__()
        self.flt, self.rows, self.total, self.eval_round = flt, rows, total, eval_round


class DetailLoaded(Message):
    """One example in full."""

    def __init__(self, example: dict[str, Any]) -> None:
        super().__init__()
        self.example = example


SHORT_HEIGHT = 32  # below this many rows the screen gets the -short class (app.tcss): a shorter example pane


class ExamplesScreen(AppScreen):
    """Table of examples on top, the highlighted one in full below."""

    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_HEIGHT, "-tall")]

    BINDINGS = [
        Binding("escape", "back", "back"),
        Binding("l", "lineage", "lineage"),
        Binding("v", "full('#example-view')", "full text"),
        Binding("f", "filters", "filters"),
        Binding("slash", "search", "search"),
        Binding("w", "wrong", "misses"),
        Binding("k", "clear", "clear filters"),
    ]

    def __init__(self, run_id: int, initial: ExampleFilter | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.flt = initial or ExampleFilter()
        self.loaded = False
        self.total = 0

    @property
    def current_run_id(self) -> int:
        """The run whose examples are shown."""
        return self.run_id

    def compose(self) -> ComposeResult:
        """Filters, table, full view."""
        yield Header()
        with Horizontal(id="example-filters"):
            for name in FILTERS:
                yield Select([], prompt=PROMPTS[name], id=f"flt-{name}", classes="flt", compact=True)
            yield Input(placeholder="/ search text", id="flt-text", compact=True)
        yield Label("", id="examples-count")
        yield ExampleTable(id="examples-table")
        yield SourcedExampleView(id="example-view")
        yield Footer()

    def on_mount(self) -> None:
        """Load the filter options and the first rows."""
        self.sub_title = f"run {self.run_id} · examples"
        self.query_one("#example-view").border_title = "example"
        self.query_one("#flt-origin").display = False  # only in runs with examples no teacher wrote
        self.query_one(ExampleTable).focus()
        self._load_options()

    # loading ------------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="options", exit_on_error=False)
    def _load_options(self) -> None:
        store = open_store(self.l2l.store_path)
        try:
            options = filter_options(store, self.run_id)
        finally:
            store.close()
        self.post_message(OptionsLoaded(options))

    @work(thread=True, exclusive=True, group="rows", exit_on_error=False)
    def _load_rows(self, flt: ExampleFilter) -> None:
        store = open_store(self.l2l.store_path)
        try:
            rows, total, eval_round = filter_examples(store, self.run_id, flt)
        finally:
            store.close()
        self.post_message(ExamplesLoaded(flt, rows, total, eval_round))

    @work(thread=True, exclusive=True, group="detail", exit_on_error=False)
    def _load_detail(self, example_id: int) -> None:
        store = open_store(self.l2l.store_path)
        try:
            example = example_detail(store, example_id)
        finally:
            store.close()
        self.post_message(DetailLoaded(example))

    @on(OptionsLoaded)
    def _options_loaded(self, event: OptionsLoaded) -> None:
        opts = event.options
        for name in FILTERS:
            select = self.query_one(f"#flt-{name}", Select)
            values: list[Any] = ["correct", "wrong"] if name == "result" else getattr(opts, name)
            label = {"origin_round": "written r{}", "eval_round": "answer r{}"}.get(name, "{}")
            with select.prevent(Select.Changed):
                if name in COUNTED:
                    counts = getattr(opts, COUNTED[name])
                    select.set_options([(f"{v} ({counts.get(v, 0)})", v) for v in values])
                else:
                    select.set_options([(label.format(v), v) for v in values])
                current = getattr(self.flt, name)
                select.value = current if current in values else Select.NULL
        # pool, eda and oracle rows, or a filter set by whoever opened the screen
        self.query_one("#flt-origin").display = any(v != "teacher" for v in opts.origin) or bool(self.flt.origin)
        self._load_rows(self.flt)

    @on(ExamplesLoaded)
    def _rows_loaded(self, event: ExamplesLoaded) -> None:
        if event.flt != self.flt:
            return
        self.total = event.total
        table = self.query_one(ExampleTable)
        table.show(event.rows)
        shown = f"{len(event.rows)} of {event.total} examples" if event.total > len(event.rows) else f"{event.total} examples"
        more = f" (first {EXAMPLE_LIMIT}: narrow the filters)" if event.total > EXAMPLE_LIMIT else ""
        answer = "student column: answer in round " + ("-" if event.eval_round is None else str(event.eval_round))
        self.query_one("#examples-count", Label).update(f"{shown}{more} · {answer}")
        self.loaded = True
        if event.rows:
            self._load_detail(event.rows[0].id)
        else:
            self.query_one(ExampleView).show(None)

    @on(DetailLoaded)
    def _detail_loaded(self, event: DetailLoaded) -> None:
        self.query_one(ExampleView).show(event.example)

    # interaction --------------------------------------------------------------------------------
    def set_filter(self, **changes: Any) -> None:
        """Change filters and reload."""
        self.flt = replace(self.flt, **changes)
        self.loaded = False
        self._load_rows(self.flt)

    @on(Select.Changed, ".flt")
    def _select_changed(self, event: Select.Changed) -> None:
        name = (event.select.id or "").removeprefix("flt-")
        value = None if event.value is Select.NULL else event.value
        if getattr(self.flt, name) != value:
            self.set_filter(**{name: value})
        self.query_one(ExampleTable).focus()  # keyboard flow: pick a filter, then walk the rows

    @on(Input.Submitted, "#flt-text")
    def _search(self, event: Input.Submitted) -> None:
        self.set_filter(text=event.value.strip() or None)
        self.query_one(ExampleTable).focus()

    @on(DataTable.RowHighlighted, "#examples-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.row_key.value is not None:
            self._load_detail(int(event.row_key.value))

    @on(DataTable.RowSelected, "#examples-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        self.action_lineage()

    def action_lineage(self) -> None:
        """The family tree of the example under the cursor."""
        example_id = self.query_one(ExampleTable).selected_id
        if example_id is None:
            self.notify("no example selected", severity="warning")
            return
        from l2l_tui.screens.lineage import LineageScreen

        self.app.push_screen(LineageScreen(self.run_id, example_id))

    def action_filters(self) -> None:
        """Focus the first filter."""
        self.query_one("#flt-split", Select).focus()

    def action_search(self) -> None:
        """Focus the text search."""
        self.query_one("#flt-text", Input).focus()

    def action_wrong(self) -> None:
        """Seed examples the student got wrong in the answer round."""
        self.query_one("#flt-split", Select).value = "seed"
        self.query_one("#flt-result", Select).value = "wrong"

    def action_clear(self) -> None:
        """Remove every filter."""
        for name in FILTERS:
            select = self.query_one(f"#flt-{name}", Select)
            with select.prevent(Select.Changed):
                select.value = Select.NULL
        self.query_one("#flt-text", Input).value = ""
        self.set_filter(**{name: None for name in FILTERS}, text=None)
