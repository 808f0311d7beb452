"""Plain typed parameters the student and the teacher take (models/ owns them; the engine's schema converts to them)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from models.batching import micro_batch_count, optimizer_steps

# How a server teacher is sent the reply schema (models/teacher/openai_http.py says what each form is for).
ResponseFormat = Literal["auto", "json_schema", "json_object", "grammar"]


@dataclass(frozen=True)
class LoraParams:
    """LoRA adapter shape."""

    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainParams:
    """Optimiser settings of one fine-tuning; `steps`, when set, fixes the optimizer steps instead of epochs."""

    epochs: float = 3.0
    learning_rate: float = 2e-4
    batch_size: int = 8
    grad_accum: int = 1
    scheduler: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    steps: int | None = None
    eval_every: int = 0  # > 0: the planned steps are a cap, the length is chosen on validation (StudentTrainer.train)
    patience: int = 3

    def micro_batches(self, n_examples: int) -> int:
        """Micro-batches a training on n_examples takes."""
        return micro_batch_count(n_examples, self.batch_size, self.grad_accum, self.epochs, self.steps)

    def optimizer_steps(self, n_examples: int) -> int:
        """Optimizer steps a training on n_examples takes (training, dry run and step-matched baselines all ask this)."""
        return optimizer_steps(n_examples, self.batch_size, self.grad_accum, self.epochs, self.steps)


@dataclass(frozen=True)
class Selection:
    """Training length chosen on validation: score the adapter every `every` steps, keep the best, stop after `patience`
    looks without a gain (ties keep the earlier, shorter training)."""

    score: Callable[[], float]  # the validation score of the adapter as it stands
    every: int
    patience: int


@dataclass(frozen=True)
class TeacherParams:
    """How the teacher backend is set up."""

    backend: Literal["llama_cpp", "openai"] = "llama_cpp"
    model: str = ""
    base_url: str | None = None
    n_ctx: int = 4096
    n_gpu_layers: int = -1
    n_threads: int | None = None
    parallel: int = 8
    retries: int = 2
    seed: int | None = None
    response_format: ResponseFormat = "auto"
    timeout: float = 600.0
    isolate: Literal["auto", "always", "never"] = "auto"
