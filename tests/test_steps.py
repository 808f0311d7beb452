"""One source for optimizer steps: training's plan, the dry run and the step-matched baseline agree (property test)."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from engine.config.schema import TrainConfig
from models.batching import epoch_plan, step_groups


def trained_steps(n: int, cfg: TrainConfig, seed: int = 0) -> int:
    """Optimizer steps StudentTrainer.train takes on n examples: its plan, grouped as it groups it."""
    params = cfg.params()
    lengths = [random.Random(seed + i).randint(4, 64) for i in range(n)]
    return len(step_groups(epoch_plan(lengths, params.batch_size, params.micro_batches(n), seed), params.grad_accum))


@settings(max_examples=300, deadline=None)
@given(n=st.integers(1, 300), batch=st.integers(1, 32), accum=st.integers(1, 8),
       epochs=st.floats(0.05, 6, allow_nan=False), other_n=st.integers(1, 300))
def test_training_dry_run_and_matched_control_agree(n: int, batch: int, accum: int, epochs: float, other_n: int) -> None:
    cfg = TrainConfig(batch_size=batch, grad_accum=accum, epochs=epochs)
    steps = trained_steps(n, cfg)
    assert steps == cfg.optimizer_steps(n) >= 1  # the dry run shows cfg.optimizer_steps
    control = TrainConfig(batch_size=batch, grad_accum=accum, epochs=epochs, steps=steps)
    assert trained_steps(other_n, control) == control.optimizer_steps(other_n) == steps  # any seed-set size


def test_the_cases_that_used_to_disagree() -> None:
    # 20 seeds, batch 8, grad_accum 2, 3 epochs: 3 micro-batches an epoch, 9 in all, 5 steps (the dry run said 6)
    cfg = TrainConfig(batch_size=8, grad_accum=2, epochs=3)
    assert trained_steps(20, cfg) == cfg.optimizer_steps(20) == 5
    # a 12-seed, batch-4 control meant to match 2 steps trained 3 when the steps were turned into epochs
    control = TrainConfig(batch_size=4, steps=2)
    assert trained_steps(12, control) == 2
