"""Benchmark: scoring multi-token options from each prompt's KV cache vs one whole sequence per (prompt, option) pair.

The per-pair path is the reference scorer the tests keep (tests/reference_scorer.py, PairScorer).
Real rows, real SmolLM2-135M-Instruct student (the catalog's GGUF converted to an fp32 HF folder), CPU:
  math_topic  the preset's prompt ("Problem: ...\\nSubject:") against the 7 MATH subject names (1 to 3 tokens each);
  mmlu_stem   the preset's prompt (question, lettered options, "Answer:") against " " + each option's text.
Data: the product's embedded engine/demo_data/<task>.jsonl (real MATH and MMLU rows), --rows rows spread over the file. Both paths must agree to 1e-4 on prompts that fit
max_length beside their longest option (the per-pair path cuts an overlong prompt per option, the cached path once).

    nice .venv/bin/python bench/bench_options.py [--task math_topic|mmlu_stem|both] [--rows 64] [--batch-size 16] [--threads N]

Wall seconds are what a user waits; CPU seconds stay comparable while other processes share the cores (with --threads 1:
two threads spin at every barrier while the other is descheduled, which bills idle waiting as CPU time).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summary import report  # noqa: E402

from engine.config.schema import resolve  # noqa: E402
from engine.data.load import to_examples  # noqa: E402
from engine.tasks.registry import make_task  # noqa: E402
from models.batching import encode_continuation, encode_prompt  # noqa: E402
from models.catalog import resolve_model  # noqa: E402
from models.convert import resolve_student_folder  # noqa: E402
from models.device import plan_training  # noqa: E402
from models.params import LoraParams  # noqa: E402
from models.paths import model_cache  # noqa: E402
from models.student import Student  # noqa: E402
from models.student_score import StudentScorer  # noqa: E402
from tests.reference_scorer import PairScorer  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "engine" / "demo_data"


def task_rows(task: str, n: int) -> tuple[list[str], list[list[str]], list[int]]:
    """Prompts, options and the gold option index of n rows of a task, rendered by the product's own preset."""
    cfg = resolve({"name": "bench", "task": {"preset": task}})
    spec = make_task(cfg.task)
    path = DATA / f"{task}.jsonl"
    lines = path.read_text().splitlines()
    rows = [json.loads(line) for line in lines[::max(1, len(lines) // n)][:n]]  # spread: the files are in source order
    examples = to_examples(rows, spec, cfg.data, path)
    options = [spec.label_options(ex) or [] for ex in examples]
    gold = ["ABCDEFGHIJ".index(ex.answer) if ex.choices else [o.strip() for o in opts].index(ex.answer)
            for ex, opts in zip(examples, options, strict=True)]
    return [spec.render_prompt(ex) for ex in examples], options, gold


def token_bound(student: Student, prompts: list[str], options: list[list[str]]) -> float:
    """Tokens the per-pair path runs over tokens the cached path must run (prompt once, each option but its last
    token): the most any exact method that keeps every option token can gain on these rows."""
    old = new = 0
    for prompt, opts in zip(prompts, options, strict=True):
        p = len(encode_prompt(student.tokenizer, prompt, 10**9))
        lengths = [len(encode_continuation(student.tokenizer, o)) for o in opts]
        old += sum(p + n for n in lengths)
        new += p + sum(n - 1 for n in lengths)
    return old / new


def fits(student: Student, prompt: str, options: list[str]) -> bool:
    """Whether the prompt and its longest option fit max_length uncut (where both paths see the same text)."""
    longest = max(len(encode_continuation(student.tokenizer, o)) for o in options)
    return len(encode_prompt(student.tokenizer, prompt, 10**9)) + longest <= student.max_length


def accuracy(scores: list[list[float]], gold: list[int]) -> float:
    """Share of rows whose best-scoring option is the gold one."""
    return sum(max(range(len(row)), key=row.__getitem__) == g for row, g in zip(scores, gold)) / len(gold)


def timed(score: Callable[..., list[list[float]]], *args: Any) -> tuple[list[list[float]], float, float]:
    """Scores, wall seconds and CPU seconds of one scoring call."""
    wall, cpu = time.perf_counter(), time.process_time()
    scores = score(*args)
    return scores, time.perf_counter() - wall, time.process_time() - cpu


def bench(student: Student, task: str, n: int, batch_size: int) -> None:
    """Time both paths on one task and print seconds, ratio, agreement and accuracy."""
    prompts, options, gold = task_rows(task, n)
    reference, scorer = PairScorer(student), StudentScorer(student)
    reference.score_options(prompts[:2], options[:2], 2)  # warm-up
    scorer.score_options(prompts[:2], options[:2], 2)
    old, t_old, c_old = timed(reference.score_options, prompts, options, batch_size)
    new, t_new, c_new = timed(scorer.score_options, prompts, options, batch_size)
    fit = [i for i in range(len(prompts)) if fits(student, prompts[i], options[i])]
    diff = max(abs(a - b) for i in fit for a, b in zip(old[i], new[i]))
    pairs = sum(len(o) for o in options)
    print(f"\n{task}: {len(prompts)} prompts, {pairs} (prompt, option) pairs, batch {batch_size}, max_length {student.max_length}")
    print(f"  per-pair path     {t_old:8.2f}s wall {c_old:8.2f}s CPU  accuracy {accuracy(old, gold):.1%}")
    print(f"  prompt-cache path {t_new:8.2f}s wall {c_new:8.2f}s CPU  accuracy {accuracy(new, gold):.1%}")
    print(f"  speed-up {t_old / t_new:.2f}x wall, {c_old / c_new:.2f}x CPU (token bound {token_bound(student, prompts, options):.2f}x);"
          f" max |score difference| {diff:.2e}"
          f" over the {len(fit)} prompts that fit ({len(prompts) - len(fit)} cut)")
    report(f"{task} option scoring ({len(prompts)} prompts, batch {batch_size}), prompt KV cache vs per-pair sequences",
           f"{t_old:.2f}s", f"{t_new:.2f}s", t_old / t_new, "≥ 4×, |diff| < 1e-4")


def main() -> None:
    """Load the real student once and bench the chosen tasks."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=["math_topic", "mmlu_stem", "both"], default="both")
    ap.add_argument("--rows", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's choice); 1 keeps CPU seconds honest on a busy machine")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = resolve_student_folder(resolve_model("smollm2-135m-instruct"), model_cache())
    student = Student.load(folder, plan_training("auto"), LoraParams(), args.max_length)
    print(f"model: SmolLM2-135M-Instruct, fp32 HF folder {folder}; {torch.get_num_threads()} torch threads")
    for task in ("math_topic", "mmlu_stem") if args.task == "both" else (args.task,):
        bench(student, task, args.rows, args.batch_size)
    student.free()


if __name__ == "__main__":
    main()
