"""Teacher throughput: batched decoding (several sequences, shared prompt prefix) vs sequential create_chat_completion.

    .venv/bin/python bench/bench_teacher.py                       # a medium random llama GGUF in a temp dir
    .venv/bin/python bench/bench_teacher.py --model path/to/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf --n 8

Both paths get the same prompts, schema, max_tokens, temperature and seeds. Reported per path: wall time, new
examples/s (examples in schema-valid replies), generated tokens/s (all attempts), validity rate; then the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from summary import report  # noqa: E402

from models.teacher.base import TeacherRequest  # noqa: E402

SYSTEM = (
    "You write new training examples for a small student model. The task: grade-school math word problems. "
    "Each example is a short word problem and its final numeric answer. Write problems in the style of the one "
    "the student got wrong, with different names, objects and numbers, and make sure the answer is correct. "
    "Reply with JSON only, following the schema."
)
MISSES = [
    ("Sara has 12 pencils. She gives 5 to her brother and buys 8 more. How many pencils does she have now?", "15"),
    ("A baker makes 48 cookies and packs them in boxes of 6. How many boxes does he fill?", "8"),
    ("Tom reads 14 pages a day. How many pages does he read in 3 weeks?", "294"),
    ("A shirt costs $25 and is on sale for 20% off. What is the sale price in dollars?", "20"),
    ("There are 30 students in a class; 2/5 of them walk to school. How many do not walk?", "18"),
    ("A train travels 60 miles per hour for 2.5 hours. How far does it go in miles?", "150"),
    ("Mia saves $7 each week. How many weeks until she has $84?", "12"),
    ("A garden has 9 rows of 14 tulips. 17 tulips are picked. How many remain?", "109"),
]
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"examples": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
        "type": "object",
        "properties": {"question": {"type": "string", "minLength": 10, "maxLength": 300},
                       "answer": {"type": "string", "pattern": "^-?[0-9]{1,7}$"}},
        "required": ["question", "answer"], "additionalProperties": False}}},
    "required": ["examples"], "additionalProperties": False,
}


def build_requests(n: int, max_tokens: int, temperature: float) -> list[TeacherRequest]:
    """n teacher requests sharing the system message, one per (cycled) miss."""
    out = []
    for i in range(n):
        question, answer = MISSES[i % len(MISSES)]
        user = (f"The student got this problem wrong.\nProblem: {question}\nCorrect answer: {answer}\n"
                f"Student's answer: {int(answer) + 3}\nWrite 1 new example like it.")
        out.append(TeacherRequest(key=f"r{i}", messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}],
                                  schema=SCHEMA, max_tokens=max_tokens, temperature=temperature, top_p=0.95, seed=1000 + i))
    return out


def run(model: Path, mode: str, reqs: list[TeacherRequest], args: argparse.Namespace) -> dict[str, Any]:
    """Load a teacher in one mode, generate, and summarise."""
    from models.teacher.llama_cpp import LlamaCppTeacher

    t0 = time.perf_counter()
    teacher = LlamaCppTeacher(model, n_ctx=args.n_ctx, parallel=args.parallel if mode == "batched" else 1,
                              n_threads=args.threads, n_gpu_layers=args.n_gpu_layers, retries=args.retries,
                              mode=mode, grammar_first=args.grammar_first)  # type: ignore[arg-type]
    load = time.perf_counter() - t0
    teacher.generate(reqs[:1])  # warm-up: first-call allocations and page faults of the mmapped weights
    t0 = time.perf_counter()
    replies = teacher.generate(reqs)
    wall = time.perf_counter() - t0
    stats = dict(teacher.decoder.stats) if teacher.decoder is not None else {}
    info = teacher.info()
    teacher.close()
    valid = [r for r in replies if r.error is None]
    examples = sum(len((r.parsed or {}).get("examples", [])) for r in valid)
    tokens = sum(r.tokens_out for r in replies)
    return {"mode": mode, "load_s": round(load, 2), "wall_s": round(wall, 2), "replies": len(replies), "valid": len(valid),
            "validity": round(len(valid) / len(replies), 3), "attempts": sum(r.attempts for r in replies),
            "examples": examples, "examples_per_s": round(examples / wall, 3), "tokens_out": tokens,
            "tokens_per_s": round(tokens / wall, 2), "parallel": info["parallel"], "n_ctx": info["n_ctx"],
            "decoder": {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()},
            "sample": valid[0].text[:160] if valid else (replies[0].error if replies else None)}


def main() -> None:
    """Parse arguments, run both paths on the same requests, print a table and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="GGUF teacher (default: a medium random llama in a temp dir)")
    parser.add_argument("--n", type=int, default=8, help="requests per path")
    parser.add_argument("--parallel", type=int, default=8, help="sequences decoded together (batched path)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=4096)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--n-gpu-layers", type=int, default=-1)
    parser.add_argument("--grammar-first", action="store_true", help="apply the grammar to every candidate (no pick-first check)")
    parser.add_argument("--modes", default="sequential,batched")
    parser.add_argument("--random-shape", default="512,8,8,4,1408,32000",
                        help="hidden,layers,heads,kv_heads,ff,vocab of the default random model")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    model = args.model
    tmp = None
    if model is None:
        from models.random_gguf import write_random_llama_gguf

        hidden, layers, heads, kv_heads, ff, vocab = (int(x) for x in args.random_shape.split(","))
        tmp = tempfile.TemporaryDirectory()
        model = write_random_llama_gguf(Path(tmp.name) / "medium.gguf", hidden=hidden, layers=layers, heads=heads,
                                        kv_heads=kv_heads, ff=ff, vocab_size=vocab, context=8192, dtype="q8_0")
    reqs = build_requests(args.n, args.max_tokens, args.temperature)
    results = [run(model, mode, reqs, args) for mode in args.modes.split(",")]
    print(f"model {model} ({model.stat().st_size / 1e6:.0f} MB), n={args.n}, max_tokens={args.max_tokens}, "
          f"T={args.temperature}, threads={args.threads}")
    print(f"{'mode':<11}{'par':>4}{'wall s':>8}{'valid':>7}{'attempts':>9}{'ex/s':>8}{'tok/s':>8}")
    for r in results:
        print(f"{r['mode']:<11}{r['parallel']:>4}{r['wall_s']:>8}{r['validity']:>7}{r['attempts']:>9}"
              f"{r['examples_per_s']:>8}{r['tokens_per_s']:>8}")
    by = {r["mode"]: r for r in results}
    if "sequential" in by and "batched" in by and by["sequential"]["tokens_per_s"]:
        print(f"batched/sequential: tokens/s x{by['batched']['tokens_per_s'] / by['sequential']['tokens_per_s']:.2f}, "
              f"examples/s x{by['batched']['examples_per_s'] / max(by['sequential']['examples_per_s'], 1e-9):.2f}")
    for r in results:
        print(f"{r['mode']} decoder stats: {r['decoder']}  sample: {r['sample']!r}")
    if "sequential" in by and "batched" in by and by["sequential"]["tokens_per_s"]:
        seq, bat = by["sequential"], by["batched"]
        report(f"teacher tok/s, batched (parallel {bat['parallel']}) vs sequential, {model.name}",
               f"{seq['tokens_per_s']} tok/s, {seq['validity']} valid", f"{bat['tokens_per_s']} tok/s, {bat['validity']} valid",
               bat["tokens_per_s"] / seq["tokens_per_s"], "≥ 2× (CPU), ≥ 5× (GPU)")
    if args.json:
        args.json.write_text(json.dumps({"model": str(model), "args": {k: str(v) for k, v in vars(args).items()},
                                         "results": results}, indent=1))
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
