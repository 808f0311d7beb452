"""The embedded demo's configuration validates and its data splits load, without downloading anything."""

from __future__ import annotations

from pathlib import Path

from engine.experiments.demo import demo_config
from engine.run.runs import prepare


def test_demo_config_validates_and_loads_its_packaged_data(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "l2l.db")
    prepared = prepare(cfg, check_models=False)
    assert cfg.task.kind == "classification" and cfg.student.model == "smollm2-135m-instruct"
    assert cfg.teacher.model == "qwen2.5-coder-1.5b-instruct" and cfg.loop.examples_per_miss == 3
    assert len(prepared.splits.seed) == cfg.data.seed_size
    assert len(prepared.splits.validation) == cfg.data.validation_size
    assert len(prepared.splits.test) == cfg.data.test_size
    assert not (tmp_path / "l2l.db").exists(), "validation writes nothing"


def test_demo_quick_and_overrides(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "l2l.db", ["loop.rounds=5"], quick=True)
    assert cfg.loop.rounds == 5 and cfg.data.seed_size == 16


def test_control_run_matches_the_chosen_rounds_optimizer_steps(store_copy: tuple[Path, int]) -> None:
    from rich.console import Console

    from engine.experiments.demo import comparison, control_config
    from engine.run.loop import Loop
    from engine.run.runs import create_run
    from engine.store.db import Store

    path, run_id = store_copy
    store = Store(path)
    store.update_run(run_id, best_round=0)
    assert control_config(store, run_id) is None, "no control when plain fine-tuning won"
    store.update_run(run_id, best_round=1)
    cfg = control_config(store, run_id)
    assert cfg is not None and cfg.loop.rounds == 1 and "control" in cfg.name
    control_id = create_run(store, prepare(cfg))
    assert Loop(store, control_id).run() == "finished"
    steps = store.round(run_id, 1).train["steps"]
    assert store.round(control_id, 0).train["steps"] == steps
    assert store.round(control_id, 0).train_size == store.count("examples", run_id=run_id, split="seed")
    console = Console(width=160, record=True)
    console.print(comparison(store, run_id, control_id))
    text = console.export_text()
    assert f"same steps (run {control_id})" in text and "as many optimizer steps" in text


def test_paired_delta_across_runs_pairs_the_same_test_texts(store_copy: tuple[Path, int]) -> None:
    from engine.reports.compare import paired_delta
    from engine.store.db import Store

    path, run_id = store_copy
    store = Store(path)
    within = paired_delta(store, run_id, 0, 1)
    across = paired_delta(store, run_id, 0, 1, run_b=run_id)
    assert within is not None and within == across
    assert within.n == store.count("examples", run_id=run_id, split="test")
    assert abs(within.delta - (within.acc_b - within.acc_a)) < 1e-9
    assert 0 <= within.p_value <= 1 and within.ci_low <= within.delta <= within.ci_high
