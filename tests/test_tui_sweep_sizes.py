"""The sweep screen on a sweep with two seed sizes, from fixed rows: the tables at one size at a time (s cycles), the
data-efficiency curve with the oracle as the ceiling, the labels saved, and the teacher's blind validation accuracy
beside the round-0 student's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from test_tui_sweep import SIZE, async_test, cell, open_sweep

from engine.store.db import Store, now
from l2l_tui.app import L2LApp
from l2l_tui.queries import sweep_list, sweep_view
from l2l_tui.widgets.curve_plot import CurvePlot, SavedLines
from l2l_tui.widgets.sweep_plot import SweepPlot
from l2l_tui.widgets.sweep_table import ArmRunsTable, ArmTable, DeltaTable, RejectedTable

SIZES = [8, 32]
TEST = 20  # test examples per run, the same texts in every run
LABELS = ("negative", "positive")
JUDGE = {"split": "validation", "rows": 100, "right": 81, "agreement": 0.81, "majority": "positive",
         "majority_share": 0.52, "seconds": 12.3, "model": "teacher.gguf"}

# (arm, seed size, seed set) -> (validation accuracy per round, test examples right of TEST at the best round)
CELLS: dict[tuple[str, int, int], tuple[list[float], int]] = {
    ("plain", 8, 0): ([0.60], 12), ("plain", 8, 1): ([0.64], 12),
    ("plain", 32, 0): ([0.74], 15), ("plain", 32, 1): ([0.76], 15),
    ("llm2llm", 8, 0): ([0.62, 0.68, 0.70], 14), ("llm2llm", 8, 1): ([0.64, 0.70, 0.72], 14),
    ("llm2llm", 32, 0): ([0.74, 0.78, 0.80], 16), ("llm2llm", 32, 1): ([0.76, 0.80, 0.80], 16),
    ("oracle", 8, 0): ([0.62, 0.80], 16), ("oracle", 8, 1): ([0.64, 0.82], 17),
    ("oracle", 32, 0): ([0.75, 0.86], 17), ("oracle", 32, 1): ([0.76, 0.86], 18),
}
REJECTED = {("llm2llm", 8): {"meta_text": 2, "label_disagrees": 1}, ("llm2llm", 32): {"near_duplicate": 1}}


def _cell(store: Store, sweep_id: int, arm: str, size: int, seed_set: int) -> int:
    vals, right = CELLS[(arm, size, seed_set)]
    name = f"fixed · {arm} · n={size} · set {seed_set}"
    config = {"name": name, "task": {"preset": "rotten_tomatoes", "kind": "classification"},
              "student": {"model": "student.gguf"}, "teacher": {"model": "teacher.gguf"}, "loop": {"rounds": len(vals)}}
    run_id = store.create_run(name, json.dumps(config), f"hash-{arm}-{size}-{seed_set}", 7 + seed_set, {}, {}, {})
    store.add_sweep_run(sweep_id, arm, seed_set, run_id, [f"data.seed_size={size}"], seed_size=size)
    store.insert_examples([{"run_id": run_id, "split": "seed", "input": f"seed text {i}", "target": LABELS[i % 2],
                            "answer": LABELS[i % 2], "content_hash": f"s{i}", "status": "kept"} for i in range(size)])
    test_ids = store.insert_examples([{"run_id": run_id, "split": "test", "input": f"test text {i}", "target": LABELS[i % 2],
                                       "answer": LABELS[i % 2], "content_hash": f"t{i}", "status": "kept"}
                                      for i in range(TEST)])
    reasons = REJECTED.get((arm, size), {})
    for idx, val in enumerate(vals):
        last = idx == len(vals) - 1
        phases: dict[str, Any] = {"train": {"seconds": 30, "wall_seconds": 30, "steps": 4 * (idx + 1)},
                                  "eval": {"seconds": 10, "wall_seconds": 10}}
        if not last:
            phases["augment"] = {"seconds": 20, "wall_seconds": 20, "requests": 3, "examples_requested": 6}
            phases["filter"] = {"seconds": 5, "wall_seconds": 5, "reasons": reasons}
        store.upsert_round(run_id, idx, phase="done", train_size=size + 4 * idx, seed_acc=0.9, val_acc=val, test_acc=None,
                           misses=3, generated=None if last else 6, kept=None if last else 6 - sum(reasons.values()),
                           rejected=None if last else sum(reasons.values()), train_loss=1.0, phases=phases)
        if not last:
            store.insert_examples([{"run_id": run_id, "split": "synthetic", "input": f"{reason} {k} of round {idx}",
                                    "target": "positive", "answer": "positive", "origin_round": idx, "parent_id": 1,
                                    "content_hash": f"x{idx}{reason}{k}", "status": "rejected", "reason": reason}
                                   for reason, n in reasons.items() for k in range(n)])
            meta = {"origin": "oracle"} if arm == "oracle" else {"requested_label": "positive"}
            store.insert_examples([{"run_id": run_id, "split": "synthetic", "input": f"kept {k} of round {idx}",
                                    "target": "positive", "answer": "positive", "origin_round": idx, "parent_id": 1,
                                    "content_hash": f"k{idx}{k}", "status": "kept", "meta": meta}
                                   for k in range(6 - sum(reasons.values()))])
    best = vals.index(max(vals))
    store.insert_predictions([{"run_id": run_id, "round": best, "example_id": eid, "split": "test", "output": "x",
                               "extracted": "x", "correct": int(i < right), "confidence": None}
                              for i, eid in enumerate(test_ids)])
    store.upsert_round(run_id, best, test_acc=right / TEST)
    store.update_run(run_id, status="finished", best_round=best, ended=now())
    return run_id


def build_sized_sweep_store(path: Path) -> dict[str, Any]:
    """A store holding one finished 3-arm (plain, llm2llm, oracle) × 2-size (8, 32) × 2-seed-set sweep from fixed rows,
    with the teacher's blind validation accuracy."""
    store = Store(path)
    arms = [{"name": "plain", "overrides": ["loop.rounds=1"], "about": "fine-tuning on the seeds only", "matched": None,
             "reference": None},
            {"name": "llm2llm", "overrides": [], "about": "the loop as configured", "matched": None, "reference": None},
            {"name": "oracle", "overrides": ["loop.source=oracle"], "about": "real rows with true labels", "matched": None,
             "reference": "llm2llm"}]
    sweep_id = store.create_sweep("fixed curve", {"name": "fixed"}, arms, 2, "digest-curve", "curve.toml", seed_sizes=SIZES)
    runs = {}
    for size in SIZES:
        for seed_set in (0, 1):
            for arm in ("plain", "llm2llm", "oracle"):
                runs[(arm, size, seed_set)] = _cell(store, sweep_id, arm, size, seed_set)
    store.update_sweep(sweep_id, status="finished", ended=now(), judge=json.dumps(JUDGE))
    store.close()
    return {"sweep_id": sweep_id, "runs": runs}


def test_sweep_view_has_every_size_the_curve_and_the_labels_saved(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sized_sweep_store(path)
    store = Store(path, create=False)
    view = sweep_view(store, built["sweep_id"])
    assert view.sizes == SIZES and view.sized
    assert [(r["arm"], r["seed_size"], r["runs"]) for r in view.rows] == [
        (arm, n, 2) for n in SIZES for arm in ("plain", "llm2llm", "oracle")]
    assert round(100 * view.data_curve["oracle"][32].mean, 6) == 87.5
    assert round(100 * view.data_curve["llm2llm"][8].mean, 6) == 70.0
    assert view.saved[0].startswith("n=8: best llm2llm 70.0%; plain needs 20 seeds") and view.saved[0].endswith("+12 labels")
    assert "beyond the curve" in view.saved[1]
    assert {n: round(100 * v, 6) for n, v in view.first_val.items()} == {8: 62.666667, 32: 75.166667}
    assert [len(p) for p in view.round_curves[8].values()] == [1, 3, 2]
    assert view.files["plot"].exists()
    assert sweep_list(store)[0]["planned"] == 12, "arms × seed sizes × seed sets"
    again = sweep_view(store, built["sweep_id"], view)
    assert again.rows is view.rows and again.data_curve is view.data_curve and again.saved is view.saved


@async_test
async def test_sweep_screen_shows_one_size_at_a_time_and_the_curve(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    built = build_sized_sweep_store(path)
    runs = built["runs"]
    app = L2LApp(path, poll_seconds=0.1)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_sweep(pilot)
        assert screen.seed_size == 8
        arms = screen.query_one(ArmTable)
        assert arms.row_count == 3
        assert cell(arms, "llm2llm", "test") == "70.0 ± 0.0" and cell(arms, "plain", "test") == "60.0 ± 0.0"
        assert cell(arms, "llm2llm", "ids") == f"{runs[('llm2llm', 8, 0)]} {runs[('llm2llm', 8, 1)]}"
        assert cell(screen.query_one(DeltaTable), "llm2llm", "sets_plain") == "+10.0 +10.0"
        assert cell(screen.query_one(RejectedTable), "meta_text", "arm:llm2llm") == "8"
        assert "at n=8" in str(arms.border_title)
        head = str(screen.query_one("#sweep-head").render())
        assert "3 arms × sizes 8 32 × 2 seed sets · 12/12 runs finished" in head
        assert ("teacher, blind on validation: 81.0% (81/100; always 'positive': 52.0%) · round-0 student: n=8 62.7%, "
                "n=32 75.2%") in head
        curve, rounds = screen.query_one(CurvePlot), screen.query_one(SweepPlot)
        assert curve.display and not rounds.display
        assert curve.points()["oracle (ceiling)"] == [(8, 82.5), (32, 87.5)] and curve.current == 8
        saved = str(screen.query_one(SavedLines).render())
        assert "n=8: best llm2llm 70.0%; plain needs 20 seeds" in saved
        runs_table = screen.query_one(ArmRunsTable)
        assert screen.arm == "plain" and runs_table.row_count == 2
        assert runs_table.get_row_at(0)[1].plain == str(runs[("plain", 8, 0)])

        await pilot.press("s")
        await pilot.pause()
        assert screen.seed_size == 32 and curve.current == 32
        assert cell(arms, "llm2llm", "test") == "80.0 ± 0.0" and cell(arms, "oracle", "val") == "86.0 ± 0.0"
        assert cell(screen.query_one(RejectedTable), "near_duplicate", "arm:llm2llm") == "4"
        assert runs_table.get_row_at(0)[1].plain == str(runs[("plain", 32, 0)])
        assert "at n=32" in str(arms.border_title)
        assert [round(m, 6) for _, m, *_ in rounds.curves["llm2llm"]] == [75.0, 79.0, 80.0]
        await pilot.press("c")
        await pilot.pause()
        assert rounds.display and not curve.display
        await pilot.press("s")
        await pilot.pause()
        assert screen.seed_size == 8, "after the largest size, the smallest again"
        await pilot.press("down", "enter", "enter")  # llm2llm's first run at n=8
        await pilot.pause()
        assert getattr(app.screen, "run_id", None) == runs[("llm2llm", 8, 0)]
