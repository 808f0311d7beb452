"""Benchmark: sentiment evaluation by batched option scoring and batched greedy generation vs one-at-a-time generate-and-parse.

All three must give the same predictions wherever generation yields a label (greedy decoding picks the arg-max token,
so a generated label is also the higher-scoring option); the table shows agreement, accuracy and speed.
Prompts: Rotten Tomatoes rows from tests/fixtures (see bench_train.py), cycled to --prompts; model as in bench_train.py.
By default the student is first fine-tuned briefly on the same rows so that generation answers with a label.

    .venv/bin/python bench/bench_eval.py [--prompts 64] [--batch-size 16] [--train-epochs 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_train import find_model, task_pairs  # noqa: E402
from summary import report  # noqa: E402

from models.device import plan_training  # noqa: E402
from models.params import LoraParams, TrainParams  # noqa: E402
from models.student import Student  # noqa: E402
from models.student_score import StudentScorer  # noqa: E402
from models.student_train import StudentTrainer  # noqa: E402

LABELS = ["positive", "negative"]


def parse(text: str) -> str | None:
    """The label named by the first word of a generated answer, or None."""
    words = text.strip().split()
    word = words[0].strip(".,!:;\"'").lower() if words else ""
    return word if word in LABELS else None


def main() -> None:
    """Time the three ways and compare their predictions."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="HF folder or .gguf (default: converted SmolLM2-135M if present)")
    ap.add_argument("--prompts", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=4)
    ap.add_argument("--train-epochs", type=float, default=2.0, help="0: evaluate the base model zero-shot")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder, origin = find_model(args.model, Path(scratch))
        student = Student.load(folder, plan_training("auto"), LoraParams(), 512)
        pairs, data_origin = task_pairs("sentiment", args.prompts)
        print(f"model: {origin}\nprompts: {len(pairs)} from {data_origin}; batch {args.batch_size}")
        if args.train_epochs > 0:
            distinct = list(dict.fromkeys(pairs))
            stats = StudentTrainer(student).train(distinct, TrainParams(epochs=args.train_epochs, batch_size=8, learning_rate=3e-4),
                                                  seed=0, out_dir=Path(scratch) / "adapter")
            print(f"fine-tuned on {len(distinct)} distinct rows: {stats.steps} steps, {stats.seconds:.1f}s, loss {stats.final_loss:.3f}")
        prompts = [p for p, _ in pairs]
        gold = [r.strip() for _, r in pairs]
        scorer = StudentScorer(student)
        scorer.score_options(prompts[:2], [[" " + l for l in LABELS]] * 2, 2)  # warm-up

        t = time.perf_counter()
        scores = scorer.score_options(prompts, [[" " + l for l in LABELS]] * len(prompts), args.batch_size)
        t_score = time.perf_counter() - t
        by_score = [LABELS[max(range(len(LABELS)), key=row.__getitem__)] for row in scores]

        t = time.perf_counter()
        batched = scorer.generate(prompts, args.max_new_tokens, ["\n"], args.batch_size)
        t_batch = time.perf_counter() - t

        t = time.perf_counter()
        single = [scorer.generate([p], args.max_new_tokens, ["\n"], 1)[0] for p in prompts]
        t_single = time.perf_counter() - t
        student.free()

    by_batch = [parse(x) for x in batched]
    by_single = [parse(x) for x in single]
    n = len(prompts)
    print(f"\n{'method':<34}{'seconds':>9}{'prompts/s':>11}{'speed-up':>10}{'accuracy':>10}{'no label':>10}")
    for name, secs, preds in (
        ("score_options, batched", t_score, by_score),
        ("generate + parse, batched", t_batch, by_batch),
        ("generate + parse, one at a time", t_single, by_single),
    ):
        acc = sum(p == g for p, g in zip(preds, gold)) / n
        print(f"{name:<34}{secs:>9.2f}{n / secs:>11.1f}{t_single / secs:>9.1f}x{acc:>10.1%}{sum(p is None for p in preds):>10}")
    report(f"sentiment eval, batched label log-likelihood (batch {args.batch_size}) vs one-at-a-time generate+parse",
           f"{n / t_single:.1f} prompts/s", f"{n / t_score:.1f} prompts/s", t_single / t_score, "≥ 5×, same predictions")
    labelled = [i for i in range(n) if by_single[i] is not None]
    print(f"\nbatched generation == one-at-a-time text: {sum(a == b for a, b in zip(batched, single))}/{n}")
    print(f"score_options == generated label, where generation gave one: "
          f"{sum(by_score[i] == by_single[i] for i in labelled)}/{len(labelled)}")


if __name__ == "__main__":
    main()
