"""Student training on 2 CPU processes (DDP through accelerate, gloo) matches one process: loss curve and adapter."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from models.params import LoraParams, TrainParams

pytest.importorskip("accelerate")
FIXTURES = Path(__file__).parent / "fixtures"
LORA = LoraParams(r=4, alpha=8, dropout=0.0, target_modules=("q_proj", "v_proj"))  # dropout masks differ per process


def _pairs(n: int) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in (FIXTURES / "rotten_tomatoes_20.jsonl").open()][:n]
    return [(f"Review: {r['text']}\nSentiment:", " positive" if str(r["label"]) in ("1", "positive") else " negative")
            for r in rows]


def _adapter(folder: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


def test_two_processes_train_the_same_steps_as_one(tiny_gguf: Path, tmp_path: Path, capsys: Any) -> None:
    from models.convert import resolve_student_folder
    from models.device import plan_training
    from models.distributed import train_launched
    from models.paths import model_cache
    from models.student import Student
    from models.student_train import StudentTrainer

    folder = resolve_student_folder(tiny_gguf, model_cache())
    plan = plan_training("none")
    # 10 examples in micro-batches of 3 with 2 accumulated: uneven shares, a 1-example micro-batch, accumulation.
    cfg = TrainParams(epochs=2, batch_size=3, grad_accum=2, learning_rate=1e-2)
    pairs = _pairs(10)
    one = StudentTrainer(Student.load(folder, plan, LORA, 256)).train(pairs, cfg, 3, tmp_path / "one")
    steps: list[tuple[int, int, float]] = []
    two = train_launched(folder, plan, LORA, 256, pairs, cfg, 3, tmp_path / "two", 2,
                         on_step=lambda s, t, loss: steps.append((s, t, loss)))
    with capsys.disabled():
        print(f"\n1 process: losses {[round(x, 6) for x in one.losses]}, {one.tokens} tokens"
              f"\n2 processes: losses {[round(x, 6) for x in two.losses]}, {two.tokens} tokens")
    assert [s for s, _, _ in steps] == list(range(1, one.steps + 1)) and two.steps == one.steps
    assert two.losses == pytest.approx(one.losses, rel=1e-5) and two.tokens == one.tokens
    a, b = _adapter(tmp_path / "one"), _adapter(tmp_path / "two")
    assert a.keys() == b.keys()
    diff = max(float((a[k] - b[k]).abs().max()) for k in a)
    with capsys.disabled():
        print(f"adapter: largest difference {diff:.2e} (largest weight {max(float(v.abs().max()) for v in a.values()):.3f})")
    assert diff < 1e-5
    assert (tmp_path / "launch.log").is_file()


def test_loop_launches_the_processes_the_config_asks_for(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store
    from tests.conftest import tiny_config_doc

    results = {}
    for processes in (1, 2):
        doc = tiny_config_doc(tiny_gguf, tmp_path / f"p{processes}" / "l2l.db", rounds=1)
        doc["lora"] = {**doc["lora"], "dropout": 0.0}
        doc["train"] = {**doc["train"], "processes": processes}
        cfg = resolve(doc)
        store = Store(cfg.store)
        run_id = create_run(store, prepare(cfg))
        assert Loop(store, run_id).run() == "finished"
        results[processes] = (store.round(run_id, 0), store.run(run_id).plan)
        store.close()
    (single, _), (double, plan) = results[1], results[2]
    assert "2 processes" in plan["reason"]
    assert double.train_loss == pytest.approx(single.train_loss, rel=1e-5)
    assert double.train["final_loss"] == pytest.approx(single.train["final_loss"], rel=1e-5)
    assert (double.seed_acc, double.val_acc) == (single.seed_acc, single.val_acc)
    assert (Path(double.adapter_path) / "adapter_model.safetensors").is_file()
