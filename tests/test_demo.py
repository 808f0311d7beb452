"""The embedded demo's configuration validates and its data splits load, without downloading anything."""

from __future__ import annotations

from pathlib import Path

from engine.demo import demo_config
from engine.runs import prepare


def test_demo_config_validates_and_loads_its_packaged_data(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "l2l.db")
    prepared = prepare(cfg, check_models=False)
    assert cfg.task.kind == "math" and cfg.student.model == "smollm2-135m-instruct"
    assert len(prepared.splits.seed) == cfg.data.seed_size
    assert len(prepared.splits.validation) == cfg.data.validation_size
    assert len(prepared.splits.test) == cfg.data.test_size
    assert not (tmp_path / "l2l.db").exists(), "validation writes nothing"


def test_demo_quick_and_overrides(tmp_path: Path) -> None:
    cfg = demo_config(tmp_path / "l2l.db", ["loop.rounds=5"], quick=True)
    assert cfg.loop.rounds == 5 and cfg.data.seed_size == 16
