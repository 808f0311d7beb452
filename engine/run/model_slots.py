"""The run's two models, never resident together: the student is freed before the teacher loads and vice versa."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.run.meter import PhaseMeter
from models.teacher.base import Teacher


class ModelSlots:
    """Loads the student (with a wanted adapter) or the teacher on demand, at most one at a time."""

    def __init__(self, cfg: RunConfig, *, on_plan: Callable[[dict[str, str]], None],
                 on_teacher: Callable[[dict[str, Any]], None]) -> None:
        self.cfg = cfg
        self.on_plan = on_plan  # told the student's training plan each time it loads
        self.on_teacher = on_teacher  # told what the teacher backend set up each time it loads
        self._student: Any = None
        self._adapter: str | None = None
        self._teacher: Any = None
        self.torch_threads: Any = None  # models.threads.TorchThreads of the student's current phase (CPU only)

    def student(self, meter: PhaseMeter, adapter: str | None) -> Any:
        """The student with `adapter` attached (None: the bare base, ready to train); loaded at most once per phase."""
        if self._student is not None and (adapter is None or adapter == self._adapter):
            self._fit_threads()
            return self._student
        from models.catalog import resolve_model
        from models.convert import resolve_student_folder
        from models.device import plan_training
        from models.paths import model_cache
        from models.student import Student

        self.free_student()
        self.close_teacher()
        t0 = time.perf_counter()
        folder = resolve_student_folder(resolve_model(self.cfg.student.model), model_cache())
        plan = plan_training(self.cfg.student.quantization)
        processes = self.cfg.train.processes
        reason = plan.reason + (f" Trained by {processes} processes (DDP through accelerate)." if processes > 1 else "")
        self.torch_threads = None
        if plan.device == "cpu" and processes == 1:
            from models.threads import TorchThreads

            self.torch_threads = TorchThreads(self.cfg.student.threads)
            reason += f" Threads: {self.torch_threads.describe()}."
        self.on_plan({"mode": plan.mode, "device": plan.device, "reason": reason,
                      **({"threads": str(self.torch_threads.reading.threads)} if self.torch_threads else {})})
        if processes > 1:
            from models.distributed import LaunchedStudent

            self._student = LaunchedStudent(folder, plan, self.cfg.lora.params(), self.cfg.student.max_length, processes,
                                            gradient_checkpointing=self.cfg.student.gradient_checkpointing,
                                            adapter=Path(adapter) if adapter else None)
        else:
            self._student = Student.load(folder, plan, self.cfg.lora.params(), self.cfg.student.max_length,
                                         gradient_checkpointing=self.cfg.student.gradient_checkpointing,
                                         adapter=Path(adapter) if adapter else None)
            self._student.threads = self.torch_threads
        self._adapter = adapter
        meter.mark("load", time.perf_counter() - t0)
        return self._student

    def _fit_threads(self) -> None:
        """A new phase with the resident student: look at the free cores again before it starts."""
        if self.torch_threads is not None:
            from models.threads import TorchThreads

            self.torch_threads = TorchThreads(self.cfg.student.threads)
            self._student.threads = self.torch_threads

    def threads_used(self) -> list[int]:
        """Torch thread counts the student's current phase has used so far (empty off the CPU)."""
        return sorted(self.torch_threads.monitor.seen) if self.torch_threads is not None else []

    def trained(self, adapter: str) -> None:
        """The resident student now carries the adapter it just saved (a launched student reads it from there)."""
        self._adapter = adapter
        published = getattr(self._student, "adapter_at", None)
        if published is not None:
            published(Path(adapter))

    def teacher(self, meter: PhaseMeter) -> Any:
        """The teacher backend (the student is freed first)."""
        self.free_student()
        if self._teacher is None:
            t0 = time.perf_counter()
            self._teacher = open_run_teacher(self.cfg)
            meter.mark("load", time.perf_counter() - t0)
            self.on_teacher(self._teacher.info())
        return self._teacher

    def free_student(self) -> None:
        """Release the student's memory."""
        if self._student is not None:
            self._student.free()
            self._student = None
            self._adapter = None

    def close_teacher(self) -> None:
        """Release the teacher's memory."""
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None

    def close(self) -> None:
        """Release both."""
        self.free_student()
        self.close_teacher()


def trainer_of(student: Any) -> Any:
    """What trains a loaded student: its StudentTrainer, or a LaunchedStudent itself (it launches the processes)."""
    from models.distributed import LaunchedStudent
    from models.student_train import StudentTrainer

    return student if isinstance(student, LaunchedStudent) else StudentTrainer(student)


def scorer_of(student: Any) -> Any:
    """What evaluates a loaded student (score_options, generate): its StudentScorer, or a LaunchedStudent itself."""
    from models.distributed import LaunchedStudent
    from models.student_score import StudentScorer

    return student if isinstance(student, LaunchedStudent) else StudentScorer(student)


def open_run_teacher(cfg: RunConfig) -> Teacher:
    """The teacher backend a run config names (a llama.cpp GGUF is resolved through the catalog)."""
    from models.teacher import open_teacher

    path = None
    if cfg.teacher.backend == "llama_cpp":
        from models.catalog import resolve_model

        path = resolve_model(cfg.teacher.model)
    return open_teacher(cfg.teacher.params(), path, cfg.seed)


def describe_teacher(info: dict[str, Any]) -> str:
    """One readable line from the teacher's info: model file, mode, context, offload (a warning if a GPU goes unused),
    and how its CPU threads were chosen."""
    model = Path(str(info.get("model", "?"))).name
    parts = [f"{model} via {info.get('backend', '?')}"]
    if info.get("mode"):
        parts.append(f"{info['mode']} ×{info.get('parallel', 1)}")
    if info.get("n_ctx"):
        parts.append(f"n_ctx {info['n_ctx']}")
    if "n_gpu_layers_offloaded" in info:
        n_layer = info.get("n_layer")  # llama.cpp counts the output layer too: 29/29 for a 28-block model
        parts.append(f"{info['n_gpu_layers_offloaded']}/{n_layer + 1 if isinstance(n_layer, int) else '?'} layers on GPU")
    if info.get("fallback"):
        parts.append(str(info["fallback"]))
    if info.get("threads_chosen"):
        parts.append(f"threads {info['threads_chosen']}")
    extra = {k: v for k, v in info.items() if k in ("base_url", "server_model", "process") and v}
    parts += [f"{k} {v}" for k, v in extra.items()]
    # A CPU-only llama.cpp build on a GPU machine offloads nothing and says nothing: say it loudly here.
    if info.get("gpu_offload_supported") is False and info.get("n_gpu_layers_requested") != 0:
        from models.device import gpu_present, offload_warning

        gpu = info["gpu_present"] if "gpu_present" in info else gpu_present()
        warning = offload_warning(bool(gpu), False)
        if warning:
            parts.append(warning)
    return " · ".join(parts) if parts else json.dumps(info, default=str)
