"""Benchmark: useful (non-pad) training tokens/s of the length-grouped, dynamically padded loop vs padding baselines.

Same examples, same model, same number of optimizer steps for each mode:
  grouped     length-grouped batches, each padded to its own max (the product's loop)
  longest     plainly shuffled batches, each padded to its own max
  max_length  plainly shuffled batches padded to student.max_length
  naive       max_length padding and the LM head run on every position (what a pad-to-max HF Trainer does)

Data: the real rows in tests/fixtures (rotten_tomatoes_20.jsonl, gsm8k_10.jsonl: Rotten Tomatoes and GSM8K train
rows) cycled to fill the steps; where those files are missing, random-word texts whose character lengths follow
log-normal fits of the real sets (Rotten Tomatoes median 110 chars, p90 180; GSM8K question+answer median 484, p90 807).
Model: the SmolLM2-135M-Instruct folder converted into the model cache if present (or --model), else a random llama
of SmolLM2-135M's shape with a byte-level tokenizer (about 4x more tokens per text than SmolLM2's BPE).

    .venv/bin/python bench/bench_train.py [--steps 4] [--batch-size 8] [--max-length 512] [--tasks sentiment,gsm8k]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from summary import report  # noqa: E402

from models.convert import resolve_student_folder  # noqa: E402
from models.device import plan_training  # noqa: E402
from models.params import LoraParams, TrainParams  # noqa: E402
from models.paths import model_cache  # noqa: E402
from models.student import Student  # noqa: E402
from models.student_train import StudentTrainer  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures"
MODES = ("grouped", "longest", "max_length", "naive")


def find_model(given: str | None, scratch: Path) -> tuple[Path, str]:
    """The model folder to benchmark and a description of where it comes from."""
    if given:
        return resolve_student_folder(given, model_cache()), f"given: {given}"
    for source in sorted((model_cache() / "hf").glob("*/source.json")):
        if "smollm2-135m" in json.loads(source.read_text()).get("gguf", "").lower():
            return source.parent, "SmolLM2-135M-Instruct (fp32 HF folder converted from the catalog's Q4_1 GGUF)"
    return random_smollm2_shape(scratch / "random-smollm2"), (
        "random llama of SmolLM2-135M's shape (no converted SmolLM2 found); byte-level tokenizer, so ~4x more tokens per text"
    )


def random_smollm2_shape(path: Path) -> Path:
    """A random-weight LlamaForCausalLM shaped like SmolLM2-135M (vocab 49152) with a byte-level tokenizer."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {"<s>": 0, "</s>": 1, "<pad>": 2}
    for ch in sorted(ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
        num_key_value_heads=3, max_position_embeddings=8192, tie_word_embeddings=True, bos_token_id=0, eos_token_id=1,
        pad_token_id=2,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def _jsonl(name: str) -> list[dict] | None:
    path = FIXTURES / name
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else None


def _random_text(rng: random.Random, median: float, p90: float) -> str:
    """Random words of a log-normal character length (fit by median and 90th percentile)."""
    sigma = math.log(p90 / median) / 1.2816
    target = int(math.exp(rng.gauss(math.log(median), sigma)))
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < target:
        words.append("".join(rng.choice("etaoinshrdlucmfwyp") for _ in range(rng.randint(2, 9))))
    return " ".join(words)


def task_pairs(task: str, n: int) -> tuple[list[tuple[str, str]], str]:
    """n (prompt, response) pairs for 'sentiment' or 'gsm8k', and where they come from."""
    rng = random.Random(0)
    if task == "sentiment":
        rows = _jsonl("rotten_tomatoes_20.jsonl")
        if rows:
            pool = [(f"Review: {r['text']}\nSentiment:", f" {r['label']}") for r in rows]
            origin = f"{len(rows)} Rotten Tomatoes rows (tests/fixtures) cycled"
        else:
            pool = [(f"Review: {_random_text(rng, 110, 180)}\nSentiment:", rng.choice([" positive", " negative"])) for _ in range(200)]
            origin = "random texts with Rotten Tomatoes' length distribution"
    else:
        rows = _jsonl("gsm8k_10.jsonl")
        if rows:
            pool = [(f"Question: {r['question']}\nAnswer:", f" {r['answer']}") for r in rows]
            origin = f"{len(rows)} GSM8K train rows (tests/fixtures) cycled"
        else:
            pool = []
            for _ in range(200):
                text = _random_text(rng, 484, 807)
                cut = int(len(text) * 0.45)
                pool.append((f"Question: {text[:cut]}\nAnswer:", f" {text[cut:]}\n#### 42"))
            origin = "random texts with GSM8K's length distribution"
    return [pool[i % len(pool)] for i in range(n)], origin


def run_mode(student: Student, pairs: list[tuple[str, str]], mode: str, batch_size: int, out: Path) -> dict:
    """Train once in `mode`; the numbers the table shows."""
    cfg = TrainParams(epochs=1, batch_size=batch_size, learning_rate=1e-4, warmup_ratio=0.0)
    student._fast_head = mode != "naive"
    try:
        stats = StudentTrainer(student).train(pairs, cfg, seed=0, out_dir=out / mode, padding="max_length" if mode == "naive" else mode)
    finally:
        student._fast_head = True
    return {
        "mode": mode,
        "steps": stats.steps,
        "s_per_step": stats.seconds / stats.steps,
        "useful_tok_s": stats.tokens_per_s,
        "padded_tok_s": stats.padded_tokens / stats.seconds,
        "pad_share": 1 - stats.tokens / stats.padded_tokens,
        "useful_tokens": stats.tokens,
        "peak_rss_mb": stats.peak_rss_mb,
    }


def main() -> None:
    """Run every mode on every task and print a table with speed ratios."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="HF folder or .gguf (default: converted SmolLM2-135M if present)")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--tasks", default="sentiment,gsm8k")
    ap.add_argument("--modes", default=",".join(MODES))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder, origin = find_model(args.model, Path(scratch))
        plan = plan_training("auto")
        student = Student.load(folder, plan, LoraParams(), args.max_length)
        print(f"model: {origin}\n  {folder}\nplan: {plan.mode} on {plan.device}; batch {args.batch_size}, "
              f"{args.steps} steps per mode, max_length {args.max_length}")
        warm, _ = task_pairs("sentiment", args.batch_size)
        StudentTrainer(student).train(warm, TrainParams(epochs=1, batch_size=args.batch_size), seed=0, out_dir=Path(scratch) / "warm")
        for task in args.tasks.split(","):
            pairs, data_origin = task_pairs(task, args.steps * args.batch_size)
            lengths = sorted(len(student.tokenizer(p)["input_ids"]) + len(student.tokenizer(r)["input_ids"]) + 1 for p, r in pairs)
            print(f"\n== {task}: {data_origin}; tokens per example min/median/max "
                  f"{lengths[0]}/{lengths[len(lengths) // 2]}/{lengths[-1]}")
            rows = [run_mode(student, pairs, m, args.batch_size, Path(scratch) / task) for m in args.modes.split(",")]
            base = {r["mode"]: r["useful_tok_s"] for r in rows}
            print(f"{'mode':<11}{'s/step':>8}{'useful tok/s':>14}{'padded tok/s':>14}{'pad share':>11}{'peak RSS MB':>13}"
                  f"{'vs max_length':>15}{'vs naive':>10}")
            for r in rows:
                vs_max = r["useful_tok_s"] / base["max_length"] if "max_length" in base else float("nan")
                vs_naive = r["useful_tok_s"] / base["naive"] if "naive" in base else float("nan")
                print(f"{r['mode']:<11}{r['s_per_step']:>8.2f}{r['useful_tok_s']:>14.0f}{r['padded_tok_s']:>14.0f}"
                      f"{r['pad_share']:>11.1%}{r['peak_rss_mb']:>13.0f}{vs_max:>14.1f}x{vs_naive:>9.1f}x")
            if "grouped" in base and "max_length" in base:
                report(f"training useful tok/s on {task}, length-grouped vs pad-to-{args.max_length}",
                       f"{base['max_length']:.0f} tok/s", f"{base['grouped']:.0f} tok/s", base["grouped"] / base["max_length"],
                       "≥ 2× on sentiment")
        student.free()


if __name__ == "__main__":
    main()
