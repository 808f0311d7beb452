"""The round table and the demo's result table stay readable at 80 columns, as when `make demo > log` pipes them."""

from __future__ import annotations

import os
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console, RenderableType

from engine.data.example_rows import example_row
from engine.store.db import Store

SNAPSHOTS = Path(__file__).parent / "text_snapshots" / "test_narrow_tables"  # syrupy fails a run on files it does not own in __snapshots__

# The demo run the README shows (train size, misses, kept, rejected, seed/val/test accuracy, seconds per phase,
# optimizer steps): a real run's numbers, so the widths are the ones a user sees.
ROUNDS = [
    (32, 19, 43, 14, 0.8125, 0.765, 0.77, {"train": 7.3, "eval": 20.1, "augment": 59.5, "filter": 0.3}, 4),
    (75, 19, 28, 29, 0.8125, 0.755, 0.79, {"train": 10.6, "eval": 20.1, "augment": 66.1, "filter": 0.4}, 10),
    (103, 12, None, None, 0.90625, 0.79, 0.813, {"train": 14.4, "eval": 19.9}, 13),
]
REJECTED = ({"exact_duplicate": 8, "near_duplicate": 6}, {"near_duplicate": 16, "exact_duplicate": 13})
CONTROL = (32, 12, 0.90625, 0.785, 0.82, {"train": 18.0, "eval": 19.8}, 13)
TEST_RIGHT = (231, 244)  # of the demo's 300 test rows: round 0 and the chosen round
CONTROL_RIGHT = 246


def demo_store(path: Path) -> tuple[Store, int, int]:
    """A store holding the demo run above and its control run, written as the loop writes them; returns (store, run, control)."""
    from engine.experiments.demo import control_config, demo_config
    from engine.run.runs import prepare

    cfg = demo_config(path)
    test = prepare(cfg, check_models=False).splits.test
    store = Store(path)
    with store.transaction():
        run_id = store.create_run(cfg.name, cfg.to_json(), cfg.digest(), cfg.seed, {}, {}, {})
        test_ids = store.insert_examples([example_row(run_id, "test", ex) for ex in test])
        for idx, (size, misses, kept, rejected, seed, val, test_acc, seconds, steps) in enumerate(ROUNDS):
            phases: dict[str, Any] = {p: {"seconds": s} for p, s in seconds.items()}
            phases["train"].update(steps=steps, label_mix={"negative": size // 2, "positive": size - size // 2})
            if kept is not None:
                phases["filter"]["reasons"] = REJECTED[idx]
            store.upsert_round(run_id, idx, phase="done", train_size=size, misses=misses, seed_acc=seed, val_acc=val,
                               test_acc=test_acc, phases=phases, kept=kept, rejected=rejected,
                               generated=None if kept is None or rejected is None else kept + rejected)
        for idx, right in zip((0, 2), TEST_RIGHT, strict=True):
            store.insert_predictions(_predictions(run_id, idx, test_ids, right))
        store.update_run(run_id, status="finished", best_round=2, ended=store.run(run_id).created)
    control = control_config(store, run_id)
    assert control is not None
    with store.transaction():
        control_id = store.create_run(control.name, control.to_json(), control.digest(), control.seed, {}, {}, {})
        control_test = store.insert_examples([example_row(control_id, "test", ex) for ex in test])
        size, misses, seed, val, test_acc, seconds, steps = CONTROL
        phases = {p: {"seconds": s} for p, s in seconds.items()}
        phases["train"]["steps"] = steps
        store.upsert_round(control_id, 0, phase="done", train_size=size, misses=misses, seed_acc=seed, val_acc=val,
                           test_acc=test_acc, phases=phases)
        store.insert_predictions(_predictions(control_id, 0, control_test, CONTROL_RIGHT))
        store.update_run(control_id, status="finished", best_round=0, ended=store.run(control_id).created)
    return store, run_id, control_id


def _predictions(run_id: int, round_idx: int, example_ids: list[int], right: int) -> list[dict[str, Any]]:
    """Prediction rows with `right` of the examples correct, spread over the split by a fixed stride."""
    n = len(example_ids)
    return [{"run_id": run_id, "round": round_idx, "example_id": eid, "split": "test", "output": " x", "extracted": "x",
             "correct": (7 * i) % n < right, "confidence": 0.9} for i, eid in enumerate(example_ids)]


def render(renderable: RenderableType, width: int = 80) -> str:
    """What a piped stdout of `width` columns receives: no colours, no terminal."""
    sink = StringIO()
    Console(width=width, file=sink, force_terminal=False, color_system=None).print(renderable)
    return sink.getvalue()


def assert_fits(text: str, width: int = 80) -> None:
    """Every line fits and no cell was cut short."""
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= width, "\n".join(line for line in lines if len(line) > width)
    assert "…" not in text, text


def matches_snapshot(name: str, text: str) -> None:
    """Compare with the committed snapshot (trailing spaces aside); L2L_UPDATE_SNAPSHOTS=1 rewrites it."""
    path = SNAPSHOTS / f"{name}.txt"
    text = "".join(line.rstrip() + "\n" for line in text.splitlines())
    if os.environ.get("L2L_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPSHOTS.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        if os.environ.get("L2L_UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"no snapshot {path.name} yet: wrote it, check it and commit it")
    assert text == path.read_text(encoding="utf-8"), f"differs from {path}; rerun with L2L_UPDATE_SNAPSHOTS=1 if meant"


@pytest.fixture
def demo(tmp_path: Path) -> tuple[Store, int, int]:
    return demo_store(tmp_path / "l2l.db")


def test_round_table_at_80_columns(demo: tuple[Store, int, int]) -> None:
    from engine.reports.run_report import rounds_table

    store, run_id, _ = demo
    text = render(rounds_table(store, run_id, title="rounds", width=80))
    assert_fits(text)
    for cell in ("43/14", "28/29", "90.6", "81.3", "1m27s", "1m37s"):
        assert cell in text, cell
    matches_snapshot("rounds_80", text)


def test_run_summary_at_80_columns(demo: tuple[Store, int, int]) -> None:
    from engine.reports.run_report import run_summary

    store, run_id, _ = demo
    text = render(run_summary(store, run_id, width=80))
    assert_fits(text)
    matches_snapshot("run_summary_80", text)


def test_demo_result_table_at_80_columns(demo: tuple[Store, int, int]) -> None:
    from engine.experiments.demo import result_table

    store, run_id, control_id = demo
    text = render(result_table(store, run_id, control_id, width=80))
    assert_fits(text)
    for cell in ("76.5", "79.0", "78.5", "103", "13"):
        assert cell in text, cell
    matches_snapshot("demo_result_80", text)


def test_whole_demo_comparison_fits_80_columns(demo: tuple[Store, int, int]) -> None:
    from engine.experiments.demo import comparison

    store, run_id, control_id = demo
    text = render(comparison(store, run_id, control_id, width=80))
    assert_fits(text)
    assert "LLM2LLM vs plain fine-tuning on test: +4.3 points" in " ".join(text.split())


def test_wide_terminals_keep_every_phase_column(demo: tuple[Store, int, int]) -> None:
    from engine.reports.run_report import rounds_table

    store, run_id, _ = demo
    text = render(rounds_table(store, run_id, width=120), width=120)
    assert_fits(text, 120)
    header = next(line for line in text.splitlines() if "┃ round" in line)
    assert [h.strip() for h in header.strip("┃").split("┃")][-4:] == ["train", "eval", "teacher", "filter"]


@pytest.mark.parametrize("width", [60, 80])
def test_a_long_runs_numbers_stay_whole(demo: tuple[Store, int, int], width: int) -> None:
    from engine.reports.run_report import rounds_table

    store, run_id, _ = demo
    store.upsert_round(run_id, 1, train_size=10_400, misses=1_250, generated=6_912, kept=1_234, rejected=5_678,
                       phases={"train": {"seconds": 7_444.0}, "augment": {"seconds": 61.0}})
    text = render(rounds_table(store, run_id, width=width), width=width)
    assert_fits(text, width)
    for cell in ("10400", "1234/5678", "125m05s", "76.5", "81.3"):
        assert cell in text, (width, cell)
