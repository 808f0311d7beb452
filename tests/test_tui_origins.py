"""New examples no teacher wrote (examples.meta.origin: pool, eda, oracle) counted apart from the teacher's: in
`l2l status RUN` and in the example browser's "written by" filter, table and detail pane."""

from __future__ import annotations

import io
from pathlib import Path

from fixed_run import build_run_store
from rich.console import Console
from test_tui_sweep import SIZE, async_test, plain, settle, until
from textual.widgets import Select, Static

from engine.reports.run_report import run_summary
from engine.store.db import Store
from l2l_tui.app import L2LApp
from l2l_tui.queries import ExampleFilter, filter_examples, filter_options
from l2l_tui.screens.examples import ExamplesScreen
from l2l_tui.screens.runs import RunsScreen
from l2l_tui.widgets.example_table import ExampleTable

POOL_FILE = "data/unlabeled.jsonl"
# (text, label, status, reason, meta) added in round 1 to the fixed run (which has 3 kept, 3 rejected teacher rows)
OTHERS = [
    ("An unexpectedly tender story about two brothers.", "positive", "kept", None,
     {"origin": "pool", "pool_file": POOL_FILE, "pool_row": 17}),
    ("Every scene drags; I checked my watch twice.", "negative", "kept", None,
     {"origin": "pool", "pool_file": POOL_FILE, "pool_row": 4}),
    ("The cast looks bored and so was I.", "negative", "kept", None,
     {"origin": "pool", "pool_file": POOL_FILE, "pool_row": 9}),
    ("A film about a film festival.", "positive", "rejected", "verify_disagrees",
     {"origin": "pool", "pool_file": POOL_FILE, "pool_row": 23}),
    ("clumsy loud and too long far for its story thin", "negative", "kept", None, {"origin": "eda"}),
    ("a quietly film devastating that earns its tears", "positive", "kept", None, {"origin": "eda"}),
    ("Warm, funny and wise beyond its budget.", "positive", "kept", None, {"origin": "oracle"}),
]


def build_origin_store(path: Path) -> tuple[Path, int]:
    """The fixed run (tests/fixed_run.py) with pool, eda and oracle rows added in round 1."""
    path, run_id = build_run_store(path)
    store = Store(path, create=False)
    parent = store.examples(run_id, split="seed")[0].id
    store.insert_examples([{"run_id": run_id, "split": "synthetic", "input": text, "target": " " + label, "answer": label,
                            "origin_round": 1, "parent_id": parent, "content_hash": f"o{i}", "status": status,
                            "reason": reason, "meta": meta}
                           for i, (text, label, status, reason, meta) in enumerate(OTHERS)])
    store.close()
    return path, run_id


def _summary(store: Store, run_id: int) -> str:
    console = Console(width=120, file=io.StringIO(), record=True)
    console.print(run_summary(store, run_id, width=120))
    return console.export_text()


def test_status_counts_pool_eda_and_oracle_rows_apart_from_the_teachers(tmp_path: Path) -> None:
    path, run_id = build_origin_store(tmp_path / "l2l.db")
    store = Store(path, create=False)
    assert store.decided_origin_counts(run_id) == {"kept": {"teacher": 3, "pool": 3, "eda": 2, "oracle": 1},
                                            "rejected": {"teacher": 3, "pool": 1}}
    text = _summary(store, run_id)
    assert "kept: 3 written by the teacher, 3 real pool rows, 2 eda edits, 1 oracle row" in text
    assert "rejected: 3 written by the teacher, 1 real pool row" in text


def test_status_of_a_teacher_only_run_has_no_origin_lines(tmp_path: Path) -> None:
    path, run_id = build_run_store(tmp_path / "l2l.db")
    text = _summary(Store(path, create=False), run_id)
    assert "written by the teacher" not in text and "kept:" not in text


def test_filter_examples_by_who_made_them(tmp_path: Path) -> None:
    path, run_id = build_origin_store(tmp_path / "l2l.db")
    store = Store(path, create=False)
    options = filter_options(store, run_id)
    assert options.origin_counts == {"teacher": 6, "pool": 4, "eda": 2, "oracle": 1}
    rows, total, _ = filter_examples(store, run_id, ExampleFilter(origin="pool"))
    assert total == 4 and {r.origin for r in rows} == {"pool"}
    rows, total, _ = filter_examples(store, run_id, ExampleFilter(origin="teacher", status="kept"))
    assert total == 3 and {r.origin for r in rows} == {"teacher"}
    rows, _, _ = filter_examples(store, run_id, ExampleFilter(split="seed"))
    assert {r.origin for r in rows} == {None}


@async_test
async def test_examples_screen_filters_by_origin_and_shows_the_pool_row(tmp_path: Path) -> None:
    path, run_id = build_origin_store(tmp_path / "l2l.db")
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs list")
        app.open_examples(run_id)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ExamplesScreen)
        await until(pilot, lambda: screen.loaded, "the examples")
        await settle(pilot)
        select = screen.query_one("#flt-origin", Select)
        assert select.display
        assert [str(prompt) for prompt, _ in select._options[1:]] == ["teacher (6)", "pool (4)", "eda (2)", "oracle (1)"]
        select.value = "pool"
        await pilot.pause()
        await until(pilot, lambda: screen.loaded and screen.total == 4, "the pool rows")
        await settle(pilot)
        table = screen.query_one(ExampleTable)
        assert str(table.get_row_at(0)[1]) == "synthetic·pool"
        view = plain(screen.query_one("#example-text", Static))
        assert f"made by: pool · real unlabeled row 17 (0-based) of {POOL_FILE}" in " ".join(view.split())
        await pilot.press("k")  # clear filters: the origin too
        await until(pilot, lambda: screen.loaded and screen.total == 33, "every example")
        assert screen.flt.origin is None


@async_test
async def test_examples_screen_hides_the_origin_filter_when_the_teacher_wrote_all(tmp_path: Path) -> None:
    path, run_id = build_run_store(tmp_path / "l2l.db")
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs list")
        app.open_examples(run_id)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ExamplesScreen)
        await until(pilot, lambda: screen.loaded, "the examples")
        await settle(pilot)
        assert not screen.query_one("#flt-origin", Select).display
