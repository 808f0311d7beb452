"""Student training over several processes: `accelerate launch` starts one process per GPU (or per share of the CPU,
gloo) and each runs StudentTrainer.train with its Accelerator (DDP); the launching process only waits, reads the steps
and the stats. `LaunchedStudent` offers the trainer's and the scorer's calls to the loop; evaluation stays in-process.

GPU launch, by hand:  accelerate launch --multi_gpu --num_processes 2 -m models.distributed JOB.json
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from models.device import TrainingPlan
from models.errors import ConfigError
from models.params import LoraParams, Selection, TrainParams

STEP = "L2L_STEP "  # the main process's step lines on stdout: "L2L_STEP step total loss"
OnStep = Callable[[int, int, float], None]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def launch_command(job: Path, processes: int, port: int) -> list[str]:
    """The `accelerate launch` command line that trains `job` on `processes` processes (DDP, no mixed precision)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
            "-m", "models.distributed", str(job)]


def train_launched(folder: Path, plan: TrainingPlan, lora: LoraParams, max_length: int, pairs: list[tuple[str, str]],
                   cfg: TrainParams, seed: int, out_dir: Path, processes: int, *, gradient_checkpointing: bool = False,
                   init_adapter: Path | None = None, on_step: OnStep | None = None) -> Any:
    """Train an adapter into out_dir on `processes` launched processes; returns the main process's TrainStats."""
    from models.student_train import TrainStats

    out_dir = Path(out_dir)
    work = out_dir.parent / f".launch-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    job = work / "job.json"
    job.write_text(json.dumps({
        "folder": str(folder), "plan": plan.to_dict(), "lora": asdict(lora), "max_length": max_length,
        "gradient_checkpointing": gradient_checkpointing, "pairs": pairs, "params": asdict(cfg), "seed": seed,
        "out_dir": str(out_dir), "init_adapter": str(init_adapter) if init_adapter else None,
        "stats": str(work / "stats.json")}), encoding="utf-8")
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    log = out_dir.parent / "launch.log"
    with open(log, "w", encoding="utf-8") as fh:
        proc = subprocess.Popen(launch_command(job, processes, _free_port()), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=env, cwd=root)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(STEP) and on_step is not None:
                step, total, loss = line[len(STEP):].split()
                on_step(int(step), int(total), float(loss))
            else:
                fh.write(line)
        code = proc.wait()
    if code != 0 or not (work / "stats.json").is_file():
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise RuntimeError(f"training on {processes} processes failed (exit {code}); log {log}:\n{tail}")
    stats = json.loads((work / "stats.json").read_text(encoding="utf-8"))
    shutil.rmtree(work, ignore_errors=True)
    return TrainStats(**{**stats, "adapter_dir": Path(stats["adapter_dir"])})


class LaunchedStudent:
    """The student for `train.processes > 1`: train() launches the processes; evaluation loads the trained adapter here.

    Nothing is loaded in the launching process while training runs, so the launched processes have the memory."""

    def __init__(self, folder: Path, plan: TrainingPlan, lora: LoraParams, max_length: int, processes: int, *,
                 gradient_checkpointing: bool = False, adapter: Path | None = None) -> None:
        self.folder, self.plan, self.lora, self.max_length = Path(folder), plan, lora, max_length
        self.processes = processes
        self.gradient_checkpointing = gradient_checkpointing
        self.adapter = Path(adapter) if adapter else None
        self._local: Any = None

    def train(self, pairs: list[tuple[str, str]], cfg: TrainParams, seed: int, out_dir: Path,
              on_step: OnStep | None = None, init_adapter: Path | None = None, padding: str = "grouped",
              selection: Selection | None = None) -> Any:
        """Train on the launched processes (grouped padding only); the result becomes the adapter evaluated next."""
        if padding != "grouped":
            raise ValueError("multi-process training batches with padding='grouped' only")
        if selection is not None:
            raise ConfigError("train.eval_every: choosing the training length on validation needs train.processes = 1")
        self.free()
        stats = train_launched(self.folder, self.plan, self.lora, self.max_length, pairs, cfg, seed, out_dir,
                               self.processes, gradient_checkpointing=self.gradient_checkpointing,
                               init_adapter=init_adapter, on_step=on_step)
        self.adapter = Path(out_dir)
        return stats

    def adapter_at(self, path: Path) -> None:
        """The trained adapter was moved to `path` (the loop publishes it from a staging folder)."""
        self.free()
        self.adapter = Path(path)

    def local(self) -> Any:
        """The student in this process with the current adapter (loaded on first use)."""
        if self._local is None:
            from models.student import Student

            self._local = Student.load(self.folder, self.plan, self.lora, self.max_length, adapter=self.adapter)
        return self._local

    def score_options(self, *args: Any, **kwargs: Any) -> list[list[float]]:
        """StudentScorer.score_options in this process."""
        from models.student_score import StudentScorer

        return StudentScorer(self.local()).score_options(*args, **kwargs)

    def generate(self, *args: Any, **kwargs: Any) -> list[str]:
        """StudentScorer.generate in this process."""
        from models.student_score import StudentScorer

        return StudentScorer(self.local()).generate(*args, **kwargs)

    def free(self) -> None:
        """Release the in-process student, if loaded."""
        if self._local is not None:
            self._local.free()
            self._local = None


def worker(job_path: Path) -> None:
    """One launched process: load the student on this process's device and train its share."""
    import torch
    from accelerate import Accelerator

    from models.student import Student
    from models.student_train import StudentTrainer

    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    plan = TrainingPlan(**job["plan"])
    accelerator = Accelerator(cpu=plan.device != "cuda")
    if plan.device != "cuda":
        torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    lora = LoraParams(**{**job["lora"], "target_modules": tuple(job["lora"]["target_modules"])})
    student = Student.load(Path(job["folder"]), plan, lora, job["max_length"],
                           gradient_checkpointing=job["gradient_checkpointing"])
    main = accelerator.is_main_process

    def on_step(step: int, total: int, loss: float) -> None:
        print(f"{STEP}{step} {total} {loss!r}", flush=True)

    stats = StudentTrainer(student).train([(p, r) for p, r in job["pairs"]], TrainParams(**job["params"]), job["seed"],
                                          Path(job["out_dir"]), on_step=on_step if main else None,
                                          init_adapter=Path(job["init_adapter"]) if job["init_adapter"] else None,
                                          accelerator=accelerator)
    if main:
        Path(job["stats"]).write_text(json.dumps({**asdict(stats), "adapter_dir": str(stats.adapter_dir)}), encoding="utf-8")
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    worker(Path(sys.argv[1]))
