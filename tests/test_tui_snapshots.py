"""Snapshots (pytest-textual-snapshot, 120x40; the dashboard and the example browser also at 80x24) of every screen on stores written from fixed rows (tests/fixed_run.py, and
tests/test_tui_sweep.py for the sweep screen), so a numeric change in torch or llama.cpp cannot rewrite them; frozen
mode hides wall-clock values.

Update after an intended change with: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Select
from textual.worker import WorkerCancelled, WorkerFailed

from l2l_tui.app import L2LApp

SIZE = (120, 40)
SMALL = (80, 24)  # the smallest common terminal: the screens switch to their -short layout


def frozen_app(path: Path) -> L2LApp:
    """The app in snapshot mode: times, durations and pids hidden."""
    return L2LApp(path, frozen=True, poll_seconds=0.1)


async def loaded(pilot: Pilot[Any], timeout: float = 60.0) -> None:
    """Wait until the current screen has its data and every worker thread is done."""
    deadline = time.monotonic() + timeout
    while not getattr(pilot.app.screen, "loaded", True):
        if time.monotonic() > deadline:
            raise AssertionError(f"{type(pilot.app.screen).__name__} never loaded")
        await pilot.pause(0.05)
    for worker in list(pilot.app.workers):
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):  # an exclusive worker replaced by a newer one
            pass
    await pilot.pause(0.2)


def steps(*keys: str, then: Callable[[Pilot[Any]], Any] | None = None) -> Callable[[Pilot[Any]], Any]:
    """A run_before: wait for the runs screen, press keys (waiting for each screen), optionally do more."""

    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            await loaded(pilot)
        if then is not None:
            await then(pilot)
            await loaded(pilot)

    return run_before


@pytest.fixture(scope="module")
def fixed_run_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """The fixed-rows run, built once for the module (the snapshots only read it)."""
    from fixed_run import build_run_store

    return build_run_store(tmp_path_factory.mktemp("fixed") / "l2l.db")


def test_runs_screen(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE, run_before=steps())


def test_dashboard(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE, run_before=steps("enter"))


def test_examples(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE, run_before=steps("x"))


def test_dashboard_80x24(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    """Header and detail lines cut, not wrapped, so the accuracy plot keeps its rows."""
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SMALL, run_before=steps("enter"))


def test_dashboard_plot_full_80x24(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    """p shows the accuracy plot full screen."""
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SMALL, run_before=steps("enter", "p"))


def test_examples_80x24(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    """A shorter example pane, so the list shows several rows."""
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SMALL, run_before=steps("x"))


async def _synthetic_then_lineage(pilot: Pilot[Any]) -> None:
    pilot.app.screen.query_one("#flt-split", Select).value = "synthetic"
    await pilot.pause()
    await loaded(pilot)
    await pilot.press("l")
    await pilot.pause()


def test_lineage(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE,
                        run_before=steps("x", then=_synthetic_then_lineage))


def test_new_run_form(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE, run_before=steps("n"))


def test_dry_run_preview(snap_compare: Any, fixed_run_store: tuple[Path, int], tiny_config: Any) -> None:
    from engine.tools.dry_run import dry_run_sections
    from l2l_tui.screens.dry_run import DryRunScreen

    sections = dry_run_sections(tiny_config)

    async def preview(pilot: Pilot[Any]) -> None:
        await pilot.app.push_screen(DryRunScreen(sections))
        await pilot.pause()

    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE, run_before=steps(then=preview))


def test_sweep_screen(snap_compare: Any, tmp_path: Path) -> None:
    from test_tui_sweep import build_sweep_store

    build_sweep_store(tmp_path / "l2l.db")
    assert snap_compare(frozen_app(tmp_path / "l2l.db"), terminal_size=SIZE, run_before=steps("w", "enter"))


def test_sweep_screen_sizes(snap_compare: Any, tmp_path: Path) -> None:
    """A sweep with two seed sizes: the tables at the smallest, the data-efficiency curve, the labels saved."""
    from test_tui_sweep_sizes import build_sized_sweep_store

    build_sized_sweep_store(tmp_path / "l2l.db")
    assert snap_compare(frozen_app(tmp_path / "l2l.db"), terminal_size=SIZE, run_before=steps("w", "enter"))


def test_sweep_screen_next_size(snap_compare: Any, tmp_path: Path) -> None:
    """s: the tables at the next seed size; c: validation per round at that size in place of the curve."""
    from test_tui_sweep_sizes import build_sized_sweep_store

    build_sized_sweep_store(tmp_path / "l2l.db")
    assert snap_compare(frozen_app(tmp_path / "l2l.db"), terminal_size=SIZE, run_before=steps("w", "enter", "s", "c"))


async def _pool_rows(pilot: Pilot[Any]) -> None:
    pilot.app.screen.query_one("#flt-origin", Select).value = "pool"
    await pilot.pause()


def test_examples_pool_rows(snap_compare: Any, tmp_path: Path) -> None:
    """A run with pool, eda and oracle rows: the "written by" filter on pool, the pool file and row in the detail."""
    from test_tui_origins import build_origin_store

    path, _ = build_origin_store(tmp_path / "l2l.db")
    assert snap_compare(frozen_app(path), terminal_size=SIZE, run_before=steps("x", then=_pool_rows))


def test_help(snap_compare: Any, fixed_run_store: tuple[Path, int]) -> None:
    assert snap_compare(frozen_app(fixed_run_store[0]), terminal_size=SIZE, run_before=steps("question_mark"))
