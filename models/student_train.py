"""Training the student's LoRA adapter: an exact, seeded loop in one process or DDP, the length optionally chosen on
validation."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F

from models.batching import IGNORE, Encoded, collate, encode_pair, epoch_plan, step_groups
from models.device import peak_rss_mb, reset_peak_rss
from models.errors import ConfigError, DataError
from models.memory import release_heap
from models.params import Selection, TrainParams
from models.student import Student


@dataclass
class TrainStats:
    """What one training run did and cost."""

    steps: int
    epochs: float
    final_loss: float
    mean_loss: float
    tokens: int  # non-pad tokens processed (prompt + response), all epochs
    seconds: float
    tokens_per_s: float
    trainable_params: int
    peak_rss_mb: float
    peak_vram_mb: float | None
    adapter_dir: Path
    losses: list[float] = field(default_factory=list)  # per optimizer step
    padded_tokens: int = 0  # tokens including padding, to show the padding waste
    steps_run: int = 0  # optimizer steps taken; with a selection, `steps` is the chosen (best) step and the adapter its
    selection: list[tuple[int, float]] = field(default_factory=list)  # (step, validation score) at each look


class StudentTrainer:
    """Trains adapters on a loaded Student: StudentTrainer(student).train(...)."""

    def __init__(self, student: Student) -> None:
        self.student = student

    def train(
        self,
        pairs: list[tuple[str, str]],
        cfg: TrainParams,
        seed: int,
        out_dir: Path,
        on_step: Callable[[int, int, float], None] | None = None,
        init_adapter: Path | None = None,
        padding: Literal["grouped", "longest", "max_length"] = "grouped",
        accelerator: Any = None,
        selection: Selection | None = None,
    ) -> TrainStats:
        """Train a fresh adapter (or continue `init_adapter`) on (prompt, response) pairs and save it to out_dir.

        padding='grouped' (default) batches examples of similar length, each batch padded to its own max;
        'longest' (plain shuffle, batch max) and 'max_length' (plain shuffle, padded to max_length) are the
        baselines bench/bench_train.py compares against.

        With an `accelerator` (models/distributed.py launches one process per GPU, or per CPU share) each process takes
        its share of every micro-batch and DDP sums the gradients, so every optimizer step is the single-process step;
        only the main process saves the adapter and reports steps.

        With a `selection` the planned steps are a cap: the adapter is scored on validation every `selection.every` steps
        and at the end, the best one is saved, and training stops after `selection.patience` looks without a gain.
        """
        from transformers import set_seed

        student = self.student
        if padding not in ("grouped", "longest", "max_length"):
            raise ValueError(f"padding must be 'grouped', 'longest' or 'max_length', not {padding!r}")
        if not pairs:
            raise DataError("training set is empty: no (prompt, response) pairs to train on")
        if selection is not None and accelerator is not None:
            raise ConfigError("train.eval_every: choosing the training length on validation needs train.processes = 1")
        student.prepare_kbit()
        set_seed(seed)
        encoded = [encode_pair(student.tokenizer, p, r, student.max_length, student.eos_id) for p, r in pairs]
        if init_adapter is not None:
            student.attach_adapter(Path(init_adapter), trainable=True)
        else:
            student.fresh_adapter()
        plan = epoch_plan([len(e) for e in encoded], cfg.batch_size, cfg.micro_batches(len(encoded)), seed,
                          grouped=padding == "grouped")
        groups = step_groups(plan, cfg.grad_accum)
        params = [p for p in student.peft.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        total = len(groups)
        warmup = math.ceil(cfg.warmup_ratio * total)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_lambda(cfg.scheduler, warmup, total))
        pad_to = student.max_length if padding == "max_length" else None
        rank = accelerator.process_index if accelerator is not None else 0
        ddp = accelerator.prepare_model(_LossModule(self), device_placement=False) if accelerator is not None else None

        if student.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        reset_peak_rss()
        losses: list[float] = []
        tokens = padded = 0
        looks: list[tuple[int, float]] = []
        best: tuple[float, int, dict[str, torch.Tensor] | None] = (-math.inf, 0, None)
        student.peft.train()
        started = time.perf_counter()
        for step, group in enumerate(groups, 1):
            n_labels = sum(encoded[i].label_count for mb in group for i in mb)
            step_loss = 0.0
            for k, mb in enumerate(group):
                if ddp is not None:
                    counts = [0, 0]
                    step_loss += self._shared_micro_batch(ddp, accelerator, encoded, mb, n_labels, pad_to,
                                                          k == len(group) - 1, counts)
                    tokens, padded = tokens + counts[0], padded + counts[1]
                    continue
                batch = collate([encoded[i] for i in mb], student.pad_id, pad_to=pad_to)
                tokens += int(batch["attention_mask"].sum())
                padded += batch["attention_mask"].numel()
                with student.autocast():
                    loss = self._loss_sum(batch) / n_labels
                loss.backward()
                step_loss += loss.item()
            if ddp is not None:
                step_loss = _summed(step_loss, student.device)
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(step_loss)
            student.between_batches()
            if on_step is not None and rank == 0:
                on_step(step, total, step_loss)
            if selection is not None and (step % selection.every == 0 or step == total):
                score = self._look(selection)
                looks.append((step, score))
                if score > best[0]:
                    best = (score, step, self._adapter_state())
                elif sum(1 for s, _ in looks if s > best[1]) >= selection.patience:
                    break
        steps_run = len(losses)
        chosen = steps_run
        if selection is not None and best[2] is not None:
            chosen = best[1]
            if chosen != steps_run:
                self._load_adapter_state(best[2])
        seconds = time.perf_counter() - started
        del optimizer, schedule, params, ddp
        release_heap()  # activations and optimizer state are gone: give their pages back before evaluation
        student.peft.eval()
        out_dir = Path(out_dir)
        if rank == 0:
            out_dir.mkdir(parents=True, exist_ok=True)
            student.peft.save_pretrained(str(out_dir), safe_serialization=True)
        if accelerator is not None:
            tokens, padded = int(_summed(tokens, student.device)), int(_summed(padded, student.device))
            accelerator.wait_for_everyone()
        vram = round(torch.cuda.max_memory_allocated() / 2**20, 1) if student.device.type == "cuda" else None
        return TrainStats(
            steps=chosen,
            epochs=cfg.epochs,
            final_loss=losses[-1],
            mean_loss=sum(losses) / len(losses),
            tokens=tokens,
            seconds=round(seconds, 3),
            tokens_per_s=round(tokens / seconds, 1) if seconds > 0 else 0.0,
            trainable_params=student.trainable_params(),
            peak_rss_mb=peak_rss_mb(),
            peak_vram_mb=vram,
            adapter_dir=out_dir,
            losses=losses,
            padded_tokens=padded,
            steps_run=steps_run,
            selection=looks,
        )

    def _look(self, selection: Selection) -> float:
        """Score the adapter as it stands on validation, in eval mode and unmerged, then go back to training."""
        with self.student.looking():
            return float(selection.score())

    def _adapter_state(self) -> dict[str, torch.Tensor]:
        """A copy of the trainable adapter weights (the best look so far)."""
        return {name: p.detach().clone() for name, p in self.student.peft.named_parameters() if p.requires_grad}

    def _load_adapter_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put a copied adapter state back."""
        with torch.no_grad():
            for name, p in self.student.peft.named_parameters():
                if name in state:
                    p.copy_(state[name])

    def _shared_micro_batch(self, ddp: Any, accelerator: Any, encoded: list[Encoded], mb: list[int], n_labels: int,
                            pad_to: int | None, sync: bool, counts: list[int]) -> float:
        """This process's share of a micro-batch through DDP: its loss over the step's labels (scaled so DDP's mean of
        the processes' gradients is their sum), backward with the gradients synced on the step's last micro-batch only.

        A process without an example in the micro-batch runs the first one with weight 0, so all stay in step."""
        student = self.student
        share = mb[accelerator.process_index :: accelerator.num_processes]
        weight = 1.0 if share else 0.0
        batch = collate([encoded[i] for i in share or mb[:1]], student.pad_id, pad_to=pad_to)
        if share:
            counts[0] += int(batch["attention_mask"].sum())
            counts[1] += batch["attention_mask"].numel()
        with contextlib.nullcontext() if sync else accelerator.no_sync(ddp), student.autocast():
            loss = ddp(**batch) * (weight / n_labels)
            (loss * accelerator.num_processes).backward()
        return loss.item()

    def _loss_sum(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Summed next-token cross-entropy over the labelled positions of a batch."""
        student = self.student
        ids = batch["input_ids"].to(student.device)
        mask = batch["attention_mask"].to(student.device)
        target = batch["labels"][:, 1:].to(student.device)
        rows, cols = (target != IGNORE).nonzero(as_tuple=True)
        logits = student.selected_logits(ids, mask, rows, cols)
        return F.cross_entropy(logits, target[rows, cols], reduction="sum")


class _LossModule(torch.nn.Module):
    """The student's summed training loss as a module, so DDP's forward (and its gradient hooks) wraps the adapter."""

    def __init__(self, trainer: StudentTrainer) -> None:
        super().__init__()
        self.peft = trainer.student.peft  # registers the adapter's parameters with the wrapper
        self._loss = trainer._loss_sum

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed next-token cross-entropy over the labelled positions."""
        return self._loss({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels})


def _summed(value: float, device: torch.device) -> float:
    """A number summed over every launched process."""
    import torch.distributed as dist

    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def _lr_lambda(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Multiplier of the peak learning rate at optimizer step `s` (0-based): linear warmup, then the schedule."""

    def factor(s: int) -> float:
        if s < warmup:
            return (s + 1) / (warmup + 1)
        if kind == "constant":
            return 1.0
        progress = (s - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor
