"""bench/gpu.py at tiny shapes on the CPU (every row, the loss falls, the run's plan is QLoRA), and the loud warning
when a GPU is present but the llama.cpp build cannot offload (no GPU needed)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import pytest

from engine.store.rows import Round, Run

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "bench" / "gpu.py"
TINY_ROWS = [
    f"{model}: {check}"
    for model in ("tiny-llama", "tiny-qwen2")
    for check in ("train tok/s", "train peak VRAM MB", "train loss, 20 steps", "score_options prompts/s", "generate prompts/s")
] + ["teacher tiny q8_0: tok/s", "LLM2LLM run, 2 rounds (CLI)"]
WARNING = "WARNING: GPU present but this llama.cpp build cannot offload"


def load_bench() -> ModuleType:
    """bench/gpu.py as a module (it imports nothing heavy at the top)."""
    spec = importlib.util.spec_from_file_location("gpu_bench", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_bench_prints_every_row_and_the_loss_falls(tmp_path: Path) -> None:
    out = tmp_path / "rows.json"
    env = {**os.environ, "L2L_HOME": str(tmp_path / "home"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--json", str(out), "--scratch", str(tmp_path / "s")],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "llm2llm GPU bench on cpu (tiny shapes)" in proc.stdout
    for check in TINY_ROWS:
        assert f"| {check} " in proc.stdout, check
    rows = {r["check"]: r for r in json.loads(out.read_text())["rows"]}
    assert sorted(rows) == sorted(TINY_ROWS)
    for model in ("tiny-llama", "tiny-qwen2"):
        losses = rows[f"{model}: train loss, 20 steps"]["data"]
        for mode in ("baseline", "qlora"):
            assert len(losses[mode]) == 20 and losses[mode][-1] < losses[mode][0], (model, mode, losses[mode])
        train = rows[f"{model}: train tok/s"]["data"]
        assert (train["baseline"]["mode"], train["qlora"]["mode"]) == ("lora-fp32", "qlora-nf4")
        assert "needs CUDA" in rows[f"{model}: train peak VRAM MB"]["note"]
    run = rows["LLM2LLM run, 2 rounds (CLI)"]
    assert run["ok"] is True and run["data"]["plan"]["mode"] == "qlora-nf4"
    assert {"train", "eval", "augment", "filter"} <= set(run["data"]["peaks"])


def _run(plan: dict[str, str], teacher: dict[str, str]) -> Run:
    """A finished run row as the store returns it, with this plan and teacher."""
    return Run.from_row({"id": 1, "name": "r", "created": "t", "updated": None, "status": "finished", "config": {},
                         "config_hash": None, "versions": {}, "seed": 0, "pid": None, "host": None, "device": {},
                         "plan": plan, "splits": {}, "teacher": teacher, "error": None, "stop_requested": 0,
                         "ended": None, "best_round": None})


def _round(idx: int, phases: dict[str, dict[str, float]]) -> Round:
    """A done round row with these phase records."""
    return Round.from_row({"run_id": 1, "idx": idx, "phase": "done", "train_size": None, "seed_acc": None,
                           "val_acc": None, "test_acc": None, "misses": None, "generated": None, "kept": None,
                           "rejected": None, "adapter_path": None, "train_loss": None, "phases": phases})


def test_run_check_wants_qlora_and_peak_vram_in_every_phase_on_a_gpu() -> None:
    bench = load_bench()
    teacher = {"model": "t.gguf", "backend": "llama.cpp", "process": "own (pid 7)"}
    run = _run({"mode": "qlora-nf4", "device": "cuda"}, teacher)
    phases = {"train": {"peak_vram_mb": 900.0, "peak_rss_mb": 1.0}, "eval": {"peak_vram_mb": 700.0, "peak_rss_mb": 1.0}}
    assert bench.run_check(run, [_round(0, phases)], 1.0, on_gpu=True).ok is True
    in_worker = replace(run, teacher={"model": "t.gguf", "backend": "llama.cpp"})  # the CUDA crash's setting
    assert bench.run_check(in_worker, [_round(0, phases)], 1.0, on_gpu=True).ok is False
    assert bench.run_check(in_worker, [_round(0, phases)], 1.0, on_gpu=False).ok is True
    no_vram = _round(1, {"train": {"peak_rss_mb": 1.0}})
    row = bench.run_check(run, [_round(0, phases), no_vram], 1.0, on_gpu=True)
    assert row.ok is False and "round 1 train" in row.note
    lora = replace(run, plan={"mode": "lora-bf16", "device": "cuda"})
    assert bench.run_check(lora, [_round(0, phases)], 1.0, on_gpu=True).ok is False


@pytest.mark.parametrize(("gpu", "offload", "warned"), [(True, False, True), (True, True, False), (False, False, False),
                                                        (False, True, False)])
def test_offload_warning_only_for_a_gpu_the_build_cannot_use(gpu: bool, offload: bool, warned: bool) -> None:
    from models.device import offload_warning

    message = offload_warning(gpu, offload)
    assert (message is not None) == warned
    if message:
        assert message.startswith(WARNING) and "CMAKE_ARGS=-DGGML_CUDA=on" in message


def test_describe_teacher_appends_the_warning() -> None:
    from engine.run.model_slots import describe_teacher

    info = {"backend": "llama_cpp", "model": "/m/t.gguf", "mode": "batched", "parallel": 8, "n_ctx": 4096,
            "gpu_offload_supported": False, "n_gpu_layers_requested": -1, "n_gpu_layers_offloaded": 0, "n_layer": 28}
    assert WARNING in describe_teacher({**info, "gpu_present": True})
    assert "WARNING" not in describe_teacher({**info, "gpu_present": False})
    assert "WARNING" not in describe_teacher({**info, "gpu_present": True, "n_gpu_layers_requested": 0})
    assert "WARNING" not in describe_teacher({**info, "gpu_present": True, "gpu_offload_supported": True})


def test_doctor_shows_a_warning_row(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    import models.device
    from engine.tools.doctor import report

    monkeypatch.setattr(models.device, "gpu_present", lambda: True)
    # doctor asks llama.cpp in a fresh process, where a patch of llama_cpp here would not reach
    monkeypatch.setattr(models.device, "llama_gpu_offload", lambda: False)
    console = Console(record=True, width=400)
    console.print(report())
    text = console.export_text()
    assert "WARNING" in text and WARNING in text and "CMAKE_ARGS=-DGGML_CUDA=on" in text
    assert "its own process (auto: a CUDA GPU is present)" in text


def test_describe_teacher_counts_layers_as_llama_cpp_does() -> None:
    from engine.run.model_slots import describe_teacher

    # The H200 run: 28 blocks plus the output layer, all offloaded (llama.cpp prints "offloaded 29/29 layers").
    info = {"backend": "llama_cpp", "model": "/m/t.gguf", "gpu_offload_supported": True, "n_gpu_layers_requested": -1,
            "n_gpu_layers_offloaded": 29, "n_layer": 28, "process": "own (pid 5009)"}
    assert "29/29 layers on GPU" in describe_teacher(info) and "process own (pid 5009)" in describe_teacher(info)
