"""The sweep screens, the dashboard's round details and the example browser's reasons, on a store built from fixed rows
(no model runs: every number on screen is known in advance)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import functools
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from textual.pilot import Pilot
from textual.widgets import Select, Static
from textual.worker import WorkerCancelled, WorkerFailed

from engine.store.db import Store, now
from l2l_tui.app import L2LApp
from l2l_tui.queries import sweep_signature, sweep_view
from l2l_tui.screens.dashboard import DashboardScreen
from l2l_tui.screens.examples import ExamplesScreen
from l2l_tui.screens.runs import RunsScreen
from l2l_tui.screens.sweep import SweepScreen
from l2l_tui.screens.sweeps import SweepsScreen
from l2l_tui.widgets.round_table import RoundTable, top_reasons
from l2l_tui.widgets.sweep_plot import SweepPlot
from l2l_tui.widgets.sweep_table import ArmRunsTable, ArmTable, DeltaTable, RejectedTable, per_set_text
from l2l_tui.widgets.sweeps_table import SweepsTable

SIZE = (120, 40)
TEST = 10  # test examples per run, the same texts (content hashes) in every run
LABELS = ("negative", "positive")

# arm -> seed set -> the run's rounds: (validation accuracy, teacher requests, filter reasons, wall seconds per phase)
PLAN: dict[str, dict[int, list[tuple[float, int, dict[str, int], dict[str, float]]]]] = {
    "plain": {
        0: [(0.70, 0, {}, {"train": 40, "eval": 20})],
        1: [(0.74, 0, {}, {"train": 40, "eval": 20})],
    },
    "llm2llm": {
        0: [(0.70, 5, {"meta_text": 3, "label_disagrees": 2}, {"train": 40, "eval": 20, "augment": 30, "filter": 10}),
            (0.76, 4, {"meta_text": 1, "duplicate": 1}, {"train": 40, "eval": 20, "augment": 30, "filter": 10}),
            (0.80, 0, {}, {"train": 25, "eval": 15})],
        1: [(0.74, 6, {"label_mismatch": 2}, {"train": 40, "eval": 20, "augment": 30, "filter": 10}),
            (0.78, 5, {"meta_text": 2}, {"train": 40, "eval": 20, "augment": 30, "filter": 10}),
            (0.78, 0, {}, {"train": 70, "eval": 30})],
    },
}
TEST_CORRECT = {("plain", 0): 6, ("plain", 1): 7, ("llm2llm", 0): 8, ("llm2llm", 1): 8}  # first n of the test set right
KEPT = {("llm2llm", 0): 6, ("llm2llm", 1): 8}


def _config(name: str, rounds: int) -> dict[str, Any]:
    return {"name": name, "task": {"preset": "rotten_tomatoes", "kind": "classification"},
            "student": {"model": "student.gguf"}, "teacher": {"model": "teacher.gguf"}, "loop": {"rounds": rounds}}


def _round(store: Store, run_id: int, idx: int, plan: tuple[float, int, dict[str, int], dict[str, float]],
           train_size: int) -> None:
    val, requests, reasons, walls = plan
    phases: dict[str, Any] = {p: {"seconds": s, "wall_seconds": s} for p, s in walls.items()}
    phases["train"]["label_mix"] = {"negative": train_size // 2, "positive": train_size - train_size // 2}
    phases["eval"]["validation_answers"] = {"positive": 7, "negative": 3}
    if requests:
        phases["augment"].update(requests=requests, examples_requested=2 * requests)
        phases["filter"].update(reasons=reasons, flags={"label_mismatch_kept": 1},
                                label_mix_after={"negative": train_size, "positive": train_size + 1})
    generated = 2 * requests if requests else None
    rejected = sum(reasons.values())
    store.upsert_round(run_id, idx, phase="done", train_size=train_size, seed_acc=0.5, val_acc=val, test_acc=None,
                       misses=4, generated=generated, kept=None if generated is None else generated - rejected,
                       rejected=None if generated is None else rejected, train_loss=1.0 - idx / 10, phases=phases)


def _run(store: Store, sweep_id: int, arm: str, seed_set: int, *, finished: bool = True) -> int:
    rounds = PLAN[arm][seed_set] if finished else PLAN[arm][seed_set][:1]
    run_id = store.create_run(f"fixed · {arm} · set {seed_set}", json.dumps(_config(f"fixed · {arm} · set {seed_set}", 3)),
                              f"hash-{arm}-{seed_set}", 7 + seed_set, {}, {}, {})
    store.add_sweep_run(sweep_id, arm, seed_set, run_id, [f"data.seed_draw={seed_set}"] if seed_set else [])
    store.insert_examples([{"run_id": run_id, "split": "seed", "input": f"seed text {i}", "target": LABELS[i % 2],
                            "answer": LABELS[i % 2], "content_hash": f"s{i}", "status": "kept"} for i in range(4)])
    test_ids = store.insert_examples([{"run_id": run_id, "split": "test", "input": f"test text {i}", "target": LABELS[i % 2],
                                       "answer": LABELS[i % 2], "content_hash": f"t{i}", "status": "kept"}
                                      for i in range(TEST)])
    for idx, plan in enumerate(rounds):
        _round(store, run_id, idx, plan, 4 + 2 * idx)
        synthetic = []
        for reason, n in plan[2].items():
            synthetic += [{"run_id": run_id, "split": "synthetic", "input": f"{reason} {k} of round {idx}", "target": "positive",
                           "answer": "positive", "origin_round": idx, "parent_id": 1, "content_hash": f"x{idx}{reason}{k}",
                           "status": "rejected", "reason": reason,
                           "meta": {"requested_label": "negative", "what_made_it_hard": f"sarcasm, case {k}"}}
                          for k in range(n)]
        store.insert_examples(synthetic)
    if finished:
        kept = KEPT.get((arm, seed_set), 0)
        store.insert_examples([{"run_id": run_id, "split": "synthetic", "input": f"kept {k}", "target": "negative",
                                "answer": "negative", "origin_round": 0, "parent_id": 1, "content_hash": f"k{k}",
                                "status": "kept", "meta": {"requested_label": "negative"}} for k in range(kept)])
        vals = [r[0] for r in rounds]
        best = vals.index(max(vals))
        right = TEST_CORRECT[(arm, seed_set)]
        store.insert_predictions([{"run_id": run_id, "round": best, "example_id": eid, "split": "test", "output": "x",
                                   "extracted": "x", "correct": int(i < right), "confidence": None}
                                  for i, eid in enumerate(test_ids)])
        store.upsert_round(run_id, best, test_acc=right / TEST)
        store.update_run(run_id, status="finished", best_round=best, ended=now())
    else:
        store.update_run(run_id, status="running", pid=os.getpid(), best_round=0)
    return run_id


def build_sweep_store(path: Path, *, running: bool = False) -> dict[str, Any]:
    """A store holding one 2-arm × 2-seed-set sweep (plain, llm2llm) from fixed rows; `running`: the last run has only
    its round 0 and the sweep is in flight."""
    store = Store(path)
    arms = [{"name": "plain", "overrides": ["loop.rounds=1"], "about": "fine-tuning on the seeds only",
             "matched": "steps", "reference": "llm2llm"},
            {"name": "llm2llm", "overrides": [], "about": "the loop as configured", "matched": None, "reference": None}]
    sweep_id = store.create_sweep("fixed sweep", {"name": "fixed"}, arms, 2, "digest-fixed", "fixed.toml")
    runs = {}
    for seed_set in (0, 1):
        for arm in ("plain", "llm2llm"):
            runs[(arm, seed_set)] = _run(store, sweep_id, arm, seed_set, finished=not (running and (arm, seed_set) == ("llm2llm", 1)))
    if running:
        store.update_sweep(sweep_id, status="running", pid=os.getpid())
    else:
        store.update_sweep(sweep_id, status="finished", ended=now())
    store.close()
    return {"sweep_id": sweep_id, "runs": runs}


def finish_last_run(path: Path, built: dict[str, Any]) -> None:
    """What the engine writes as the in-flight run of `build_sweep_store(running=True)` finishes, and the sweep with it."""
    store = Store(path, create=False)
    run_id = built["runs"][("llm2llm", 1)]
    rounds = PLAN["llm2llm"][1]
    for idx, plan in enumerate(rounds[1:], 1):
        _round(store, run_id, idx, plan, 4 + 2 * idx)
    store.insert_examples([{"run_id": run_id, "split": "synthetic", "input": f"kept {k}", "target": "negative",
                            "answer": "negative", "origin_round": 0, "parent_id": 1, "content_hash": f"k{k}", "status": "kept"}
                           for k in range(KEPT[("llm2llm", 1)])])
    test_ids = [e.id for e in store.examples(run_id, split="test")]
    store.insert_predictions([{"run_id": run_id, "round": 1, "example_id": eid, "split": "test", "output": "x",
                               "extracted": "x", "correct": int(i < TEST_CORRECT[("llm2llm", 1)]), "confidence": None}
                              for i, eid in enumerate(test_ids)])
    store.upsert_round(run_id, 1, test_acc=TEST_CORRECT[("llm2llm", 1)] / TEST)
    store.update_run(run_id, status="finished", best_round=1, ended=now())
    store.update_sweep(built["sweep_id"], status="finished", ended=now())
    store.close()


# helpers ------------------------------------------------------------------------------------------------------
def async_test(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run an async test on a fresh event loop (no pytest async plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return run


async def until(pilot: Pilot[Any], condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Let the app run until condition() holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for: {what}")
        await pilot.pause(0.05)


async def settle(pilot: Pilot[Any]) -> None:
    """Wait for the app's worker threads and the messages they posted."""
    for worker in list(pilot.app.workers):
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):
            pass
    await pilot.pause()


def plain(static: Static) -> str:
    """What a Static shows, as plain text (rich renderables included)."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(static.content)
    return console.export_text()


def cell(table: Any, row: str, column: str) -> str:
    """Plain text of one table cell."""
    return str(table.get_cell(row, column))


async def open_sweep(pilot: Pilot[Any]) -> SweepScreen:
    """From the runs screen: w, then enter on the (only) sweep."""
    app = pilot.app
    await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs list")
    await pilot.press("w")
    listing = app.screen
    assert isinstance(listing, SweepsScreen)
    await until(pilot, lambda: listing.loaded, "the sweeps list")
    await pilot.press("enter")
    screen = app.screen
    assert isinstance(screen, SweepScreen)
    await until(pilot, lambda: screen.loaded, "the sweep")
    await settle(pilot)
    return screen


# tests ----------------------------------------------------------------------------------------------------------
@async_test
async def test_sweep_screen_shows_each_arms_numbers_deltas_rejections_and_report(tmp_path: Path) -> None:
    from engine.reports.sweep_report import gather, paired

    path = tmp_path / "l2l.db"
    built = build_sweep_store(path)
    sweep_id, runs = built["sweep_id"], built["runs"]
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs list")
        await pilot.press("w")
        listing = app.screen
        assert isinstance(listing, SweepsScreen)
        await until(pilot, lambda: listing.loaded, "the sweeps list")
        sweeps = listing.query_one(SweepsTable)
        assert cell(sweeps, str(sweep_id), "runs") == "4/4"
        assert cell(sweeps, str(sweep_id), "arms") == "plain, llm2llm"
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, SweepScreen)
        await until(pilot, lambda: screen.loaded, "the sweep")
        await settle(pilot)

        arms = screen.query_one(ArmTable)
        assert arms.row_count == 2
        expected = {
            "plain": {"runs": "2/2", "val": "72.0 ± 2.8", "test": "65.0 ± 7.1", "calls": "0 ± 0", "kept": "0 ± 0",
                      "minutes": "1.0 ± 0.0", "ids": f"{runs[('plain', 0)]} {runs[('plain', 1)]}"},
            "llm2llm": {"runs": "2/2", "val": "79.0 ± 1.4", "test": "80.0 ± 0.0", "calls": "10 ± 1", "kept": "7 ± 1",
                        "minutes": "4.5 ± 0.7", "ids": f"{runs[('llm2llm', 0)]} {runs[('llm2llm', 1)]}"},
        }
        for arm, columns in expected.items():
            for column, value in columns.items():
                assert cell(arms, arm, column) == value, (arm, column)

        deltas = screen.query_one(DeltaTable)
        store = Store(path, create=False)
        p = paired(gather(store, sweep_id), "llm2llm", "plain")
        assert p is not None and round(100 * p.delta, 6) == 15.0
        shown = cell(deltas, "llm2llm", "vs_plain")
        assert shown.startswith(f"+15.0 [{100 * p.ci_low:+.1f}, {100 * p.ci_high:+.1f}]")
        assert shown.endswith("*") == p.outside
        assert cell(deltas, "llm2llm", "sets_plain") == "+20.0 +10.0"  # seed sets 0 and 1, in order
        assert str(per_set_text(dataclasses.replace(p, per_set={0: 0.2, 2: 0.1}))) == "s0 +20.0  s2 +10.0"  # a gap
        assert cell(deltas, "plain", "vs_plain") == "-" and cell(deltas, "llm2llm", "vs_paper") == "-"

        rejected = screen.query_one(RejectedTable)
        assert [str(rejected.get_row_at(i)[0]) for i in range(rejected.row_count)] == [
            "meta_text", "label_disagrees", "label_mismatch", "duplicate", "total"]
        assert cell(rejected, "meta_text", "arm:llm2llm") == "6" and cell(rejected, "meta_text", "arm:plain") == "·"
        assert cell(rejected, "total", "arm:llm2llm") == "11"

        plot = screen.query_one(SweepPlot)
        assert [round(m, 6) for _, m, *_ in plot.curves["llm2llm"]] == [72.0, 77.0, 79.0]
        assert [(k, round(m, 6)) for k, m, *_ in plot.curves["plain"]] == [(0, 72.0)]

        png = path.parent / "sweeps" / f"sweep-{sweep_id}" / "report.png"
        assert png.exists() and (png.parent / "arms.csv").exists()
        assert str(png) in str(screen.query_one("#sweep-files", Static).render())

        # the arm's runs, and on to one run's dashboard
        runs_table = screen.query_one(ArmRunsTable)
        assert screen.arm == "plain" and runs_table.row_count == 2
        await pilot.press("down")
        await pilot.pause()
        assert screen.arm == "llm2llm"
        assert cell(runs_table, str(runs[("llm2llm", 1)]), "round") == "1"
        assert cell(runs_table, str(runs[("llm2llm", 1)]), "rejected") == "4"
        await pilot.press("enter")  # into the arm's runs
        assert runs_table.has_focus
        await pilot.press("enter")  # open the run under the cursor
        dash = app.screen
        assert isinstance(dash, DashboardScreen) and dash.run_id == runs[("llm2llm", 0)]
        await pilot.press("escape")
        assert app.screen is screen
        titles = [c.title for c in app.get_system_commands(screen)]
        assert f"Open sweep {sweep_id}" in titles and "Sweeps" in titles


@async_test
async def test_sweep_screen_follows_a_sweep_in_flight(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sweep_store(path, running=True)
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sweep(pilot)
        arms = screen.query_one(ArmTable)
        assert cell(arms, "llm2llm", "runs") == "1/2"
        assert cell(arms, "llm2llm", "val") == "80.0 ± 0.0"
        head = str(screen.query_one("#sweep-head", Static).render())
        assert "running" in head and "3/4 runs finished" in head and "1 running" in head
        # the plot already has the run in flight's round 0
        assert [n for *_, n in screen.query_one(SweepPlot).curves["llm2llm"]] == [2, 1, 1]
        assert screen.view is not None
        arms_csv = screen.view.files["arms.csv"]
        assert _csv_runs(arms_csv)["llm2llm"] == "1"
        finish_last_run(path, built)
        await until(pilot, lambda: cell(arms, "llm2llm", "runs") == "2/2", "the finished run to count")
        await settle(pilot)
        assert cell(arms, "llm2llm", "val") == "79.0 ± 1.4"
        assert "4/4 runs finished" in str(screen.query_one("#sweep-head", Static).render())
        assert _csv_runs(arms_csv)["llm2llm"] == "2", "the report files were rewritten for the newly finished run"


def _csv_runs(path: Path) -> dict[str, str]:
    """arm -> finished runs, as arms.csv says."""
    with open(path, newline="", encoding="utf-8") as fh:
        return {row["arm"]: row["runs"] for row in csv.DictReader(fh)}


def test_sweep_signature_moves_with_each_round(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sweep_store(path, running=True)
    store = Store(path, create=False)
    before = sweep_signature(store, built["sweep_id"])
    assert before is not None and sweep_signature(store, built["sweep_id"]) == before
    _round(store, built["runs"][("llm2llm", 1)], 1, PLAN["llm2llm"][1][1], 6)
    assert sweep_signature(store, built["sweep_id"]) != before
    assert sweep_signature(store, 999) is None


@async_test
async def test_dashboard_shows_rejections_by_reason_and_label_mix(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sweep_store(path)
    run_id = built["runs"][("llm2llm", 0)]
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs list")
        app.open_run(run_id)
        await pilot.pause()
        dash = app.screen
        assert isinstance(dash, DashboardScreen)
        await until(pilot, lambda: dash.loaded and len(dash.rows) == 3, "the dashboard")
        table = dash.query_one(RoundTable)
        assert cell(table, "0", "reasons") == "3 meta·2 disagree"
        assert cell(table, "1", "reasons") == "1 dup·1 meta"
        assert cell(table, "2", "reasons") == "-"
        detail = str(dash.query_one("#round-detail", Static).render())
        assert "round 0" in detail and "rejected 3 meta_text · 2 label_disagrees" in detail
        assert "kept but noted 1 label_mismatch_kept" in detail and "trained on negative 2 / positive 2" in detail
        assert "next round trains on negative 4 / positive 5" in detail
        assert "student answered (validation) positive 7 / negative 3" in detail
        await pilot.press("down")
        await pilot.pause()
        assert "round 1" in str(dash.query_one("#round-detail", Static).render())


def test_top_reasons_fits_its_column() -> None:
    assert top_reasons({}) == "-"
    assert top_reasons({"meta_text": 12, "label_disagrees": 5}) == "12 meta·5 disagree"
    many = {"meta_text": 12, "label_disagrees": 5, "duplicate": 3, "length": 2, "new_reason_x": 1}
    assert top_reasons(many) == "12 meta +4"  # the second would not leave room for the count of the rest
    assert top_reasons({"length": 2, "leaks_eval": 1, "duplicate": 1}) == "2 length·1 dup +1"
    assert top_reasons({"new_reason_x": 3}) == "3 new reason"


@async_test
async def test_examples_offer_every_reason_with_its_count_and_show_the_teachers_request(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sweep_store(path)
    run_id = built["runs"][("llm2llm", 0)]
    store = Store(path, create=False)
    counts = store.reason_counts(run_id)
    assert counts == {"meta_text": 4, "label_disagrees": 2, "duplicate": 1}
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, "the runs list")
        app.open_examples(run_id)
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ExamplesScreen)
        await until(pilot, lambda: screen.loaded, "the examples")
        await settle(pilot)
        select = screen.query_one("#flt-reason", Select)
        assert [str(prompt) for prompt, _ in select._options[1:]] == ["meta_text (4)", "label_disagrees (2)", "duplicate (1)"]
        select.value = "label_disagrees"
        await pilot.pause()
        await until(pilot, lambda: screen.loaded and screen.total == 2, "examples rejected as label_disagrees")
        await settle(pilot)
        view = plain(screen.query_one("#example-text", Static))
        assert "rejected: label_disagrees" in view
        assert "requested label: negative (written as positive)" in view
        assert "teacher's diagnosis of the miss: sarcasm, case 0" in view


def test_sweep_view_redoes_the_bootstrap_and_files_only_when_a_run_finishes(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sweep_store(path, running=True)
    sweep_id, in_flight = built["sweep_id"], built["runs"][("llm2llm", 1)]
    store = Store(path, create=False)
    first = sweep_view(store, sweep_id)
    assert first.files["plot"].exists() and first.files_error is None
    _round(store, in_flight, 1, PLAN["llm2llm"][1][1], 6)  # the run in flight moves on
    second = sweep_view(store, sweep_id, first)
    assert second.rows is first.rows and second.files == first.files
    assert len(second.curves["llm2llm"]) == 3 and [n for *_, n in second.curves["llm2llm"]] == [2, 2, 1]
    store.close()
    finish_last_run(path, built)
    store = Store(path, create=False)
    third = sweep_view(store, sweep_id, second)
    assert third.rows is not second.rows and [r["runs"] for r in third.rows] == [2, 2]
    assert third.finished == tuple(sorted(built["runs"].values()))
