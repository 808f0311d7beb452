"""The student's predictions on store rows: label options scored by log-likelihood, everything else generated."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from engine.data.example_rows import example_from_row
from engine.store.rows import Prediction, StoredExample
from engine.tasks.base import Task


def predict(task: Task, scorer: Any, rows: Sequence[StoredExample], *, round_idx: int, batch_size: int, max_new_tokens: int,
            on_progress: Callable[[int, int], None] | None = None) -> list[Prediction]:
    """One prediction per row in round round_idx: output, extracted answer, correct (0/1) and confidence."""
    examples = [example_from_row(r) for r in rows]
    prompts = [task.render_prompt(ex) for ex in examples]
    options = [task.label_options(ex) for ex in examples]
    out: list[Prediction] = []
    if all(o is not None for o in options):
        scores = scorer.score_options(prompts, options, batch_size, on_progress=on_progress)
        for row, ex, opts, logps in zip(rows, examples, options, scores, strict=True):
            assert opts is not None
            best = max(range(len(opts)), key=lambda i: logps[i])
            extracted = task.extract(opts[best], ex)
            out.append(_prediction(row, round_idx, opts[best], extracted, int(task.is_correct(extracted, ex)), softmax_at(logps, best)))
    else:
        texts = scorer.generate(prompts, max_new_tokens, task.stop, batch_size, on_progress=on_progress)
        for row, ex, text in zip(rows, examples, texts, strict=True):
            extracted = task.extract(text, ex)
            out.append(_prediction(row, round_idx, text, extracted, int(task.is_correct(extracted, ex)), None))
    return out


def _prediction(row: StoredExample, round_idx: int, output: str, extracted: str | None, correct: int,
                confidence: float | None) -> Prediction:
    return Prediction(run_id=row.run_id, round=round_idx, example_id=row.id, split=row.split, output=output,
                      extracted=extracted, correct=correct, confidence=confidence)


def is_miss(prediction: Prediction, confidence_threshold: float | None) -> bool:
    """Wrong, or right with a probability below the threshold (unset or 0: wrong answers only)."""
    if not prediction.correct:
        return True
    confidence = prediction.confidence
    return bool(confidence_threshold and confidence is not None and confidence < confidence_threshold)


def softmax_at(logps: list[float], i: int) -> float:
    """Probability of option i among the options (softmax of their log-likelihoods)."""
    top = max(logps)
    z = sum(math.exp(v - top) for v in logps)
    return math.exp(logps[i] - top) / z


def accuracy(predictions: Sequence[Prediction]) -> float | None:
    """Share of correct predictions (None for none)."""
    return sum(p.correct for p in predictions) / len(predictions) if predictions else None
