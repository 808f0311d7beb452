"""GPU proof (issue 14): QLoRA vs bf16 LoRA, batched evaluation, an offloaded teacher and a whole LLM2LLM run.

    python bench/gpu.py            # CUDA, no network: Llama-3.2-1B and Qwen2.5-1.5B shapes, a 1.5B-shaped GGUF teacher
    python bench/gpu.py --big      # also a Llama-3.1-8B shape in 4-bit, when the GPU and the disk have room
    python bench/gpu.py --tiny     # hidden 64, 2 layers: seconds on a CPU (what tests/test_gpu_bench.py runs)

Every model has random weights of a real configuration (nothing is downloaded): students are built with
transformers' `from_config` and saved beside a small byte-level tokenizer taken from a random GGUF, so prompts
tokenize to byte-ish tokens (fine for timing); the teacher is `models.random_gguf`'s llama GGUF of Qwen2.5-1.5B's
shape. Everything is measured through the product's own code: `Student.load/train/score_options/generate` under
`plan_training("nf4")` and `plan_training("none")`, `LlamaCppTeacher` batched (parallel 8) vs sequential with
every layer offloaded, `models.memory.estimate_phases` (the dry run's estimate), and `l2l run` itself. Without
CUDA, what needs it (VRAM, offload) is skipped and the table says so. Exits 1 when a check fails.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store.rows import Round, Run

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path[:0] = [str(REPO), str(BENCH)]

POOL = REPO / "tests" / "fixtures" / "rotten_tomatoes_20.jsonl"
STEPS = 20  # optimizer steps on one repeated batch: random weights must still fit it
OPTIONS = [" positive", " negative"]


@dataclass(frozen=True)
class Shape:
    """A decoder's configuration (the random weights take exactly this shape)."""

    name: str
    arch: str  # "llama" or "qwen2"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    intermediate: int
    vocab: int  # 0: the tokenizer's own size (tiny shapes)
    tied: bool
    rope_theta: float


LLAMA_1B = Shape("llama-3.2-1b", "llama", 2048, 16, 32, 8, 8192, 128256, True, 500000.0)
QWEN_15B = Shape("qwen2.5-1.5b", "qwen2", 1536, 28, 12, 2, 8960, 151936, True, 1000000.0)
LLAMA_8B = Shape("llama-3.1-8b", "llama", 4096, 32, 32, 8, 14336, 128256, False, 500000.0)
TINY_LLAMA = Shape("tiny-llama", "llama", 64, 2, 4, 2, 128, 0, True, 500000.0)
TINY_QWEN = Shape("tiny-qwen2", "qwen2", 64, 2, 4, 2, 128, 0, True, 1000000.0)
TEACHER = Shape("qwen2.5-1.5b-shape q8_0", "llama", 1536, 28, 12, 2, 8960, 151936, True, 1000000.0)
TINY_TEACHER = Shape("tiny q8_0", "llama", 64, 2, 4, 2, 128, 0, True, 10000.0)


@dataclass(frozen=True)
class Sizes:
    """How much work each measurement does."""

    batch: int
    max_length: int
    prompt_chars: int
    lr: float
    eval_prompts: int
    eval_batch: int
    new_tokens: int
    teacher_requests: int
    teacher_max_tokens: int
    init_std: float
    threads: int | None  # None: all cores; tiny shapes gain nothing from threads that spin on a shared CPU


REAL = Sizes(batch=8, max_length=512, prompt_chars=240, lr=1e-3, eval_prompts=32, eval_batch=16, new_tokens=16,
             teacher_requests=16, teacher_max_tokens=128, init_std=0.02, threads=None)
TINY = Sizes(batch=2, max_length=64, prompt_chars=24, lr=1e-2, eval_prompts=4, eval_batch=4, new_tokens=2,
             teacher_requests=4, teacher_max_tokens=16, init_std=0.2, threads=1)


@dataclass
class Row:
    """One line of the table; `ok` False fails the bench."""

    check: str
    baseline: str
    llm2llm: str
    ratio: float | None = None
    note: str = ""
    ok: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


STARTED = time.perf_counter()


def say(message: str) -> None:
    """Progress on stderr (the table goes to stdout), with the seconds since the start."""
    print(f"[gpu bench {time.perf_counter() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def cuda() -> bool:
    """Whether torch sees a CUDA GPU."""
    import torch

    return bool(torch.cuda.is_available())


def device_name() -> str:
    """The GPU's name, or "cpu"."""
    import torch

    return torch.cuda.get_device_name(0) if cuda() else "cpu"


def ratio(new: float, old: float) -> float | None:
    """new / old, None when old is zero."""
    return round(new / old, 2) if old else None


# ------------------------------------------------------------------------------------------- models


def build_tokenizer(scratch: Path) -> Any:
    """A byte-level BPE tokenizer (ChatML specials, EOS <|im_end|>) read from a tiny random GGUF."""
    from transformers import AutoTokenizer

    from models.random_gguf import write_random_llama_gguf

    gguf = write_random_llama_gguf(scratch / "tokenizer.gguf")
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name, local_files_only=True)


def student_config(shape: Shape, tokenizer: Any, init_std: float) -> Any:
    """A transformers config of `shape` whose special token ids are the tokenizer's."""
    from transformers import LlamaConfig, Qwen2Config

    cls = Qwen2Config if shape.arch == "qwen2" else LlamaConfig
    return cls(vocab_size=shape.vocab or len(tokenizer), hidden_size=shape.hidden, num_hidden_layers=shape.layers,
               num_attention_heads=shape.heads, num_key_value_heads=shape.kv_heads,
               intermediate_size=shape.intermediate, tie_word_embeddings=shape.tied, rope_theta=shape.rope_theta,
               max_position_embeddings=8192, initializer_range=init_std, bos_token_id=tokenizer.bos_token_id,
               eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def write_student(shape: Shape, folder: Path, tokenizer: Any, init_std: float) -> Path:
    """A random-weight HF folder of `shape` (bf16, built on the GPU when there is one) with the tokenizer beside it."""
    import torch
    from transformers import AutoModelForCausalLM

    if (folder / "config.json").exists():  # written by an earlier call with the same --scratch (parts run in turns)
        return folder
    on_gpu = cuda()
    torch.manual_seed(0)
    with torch.device("cuda" if on_gpu else "cpu"):
        model = AutoModelForCausalLM.from_config(student_config(shape, tokenizer, init_std),
                                                 dtype=torch.bfloat16 if on_gpu else torch.float32)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    del model
    if on_gpu:
        torch.cuda.empty_cache()
    return folder


def write_teacher(shape: Shape, path: Path) -> Path:
    """A random llama GGUF of `shape` in q8_0 (byte vocabulary padded to the real vocab size, ChatML template)."""
    from models.random_gguf import write_random_llama_gguf

    if path.exists():  # written by an earlier call with the same --scratch
        return path
    return write_random_llama_gguf(path, hidden=shape.hidden, layers=shape.layers, heads=shape.heads,
                                   kv_heads=shape.kv_heads, ff=shape.intermediate, vocab_size=shape.vocab or None,
                                   dtype="q8_0", context=8192, rope_theta=shape.rope_theta)


def load_student(folder: Path, quantization: str, sizes: Sizes) -> Any:
    """The product's Student under plan_training(quantization)."""
    from models.device import plan_training
    from models.params import LoraParams
    from models.student import Student

    lora = LoraParams(r=16, alpha=32, dropout=0.0)
    return Student.load(folder, plan_training(quantization), lora, sizes.max_length)


# ------------------------------------------------------------------------------------------- workloads


def train_pairs(sizes: Sizes) -> list[tuple[str, str]]:
    """One batch of (prompt, response) pairs, repeated at every step."""
    filler = "the film is long, the cast is warm and the plot moves on at an even pace; "
    pairs = []
    for i in range(sizes.batch):
        body = (f"review {i}: " + filler * (sizes.prompt_chars // len(filler) + 1))[: sizes.prompt_chars]
        pairs.append((f"Review: {body}\nSentiment:", OPTIONS[i % 2]))
    return pairs


def eval_prompts(sizes: Sizes) -> list[str]:
    """Evaluation prompts of mixed lengths."""
    words = "a quiet, clever and sometimes slow story about two old friends who meet again".split()
    return [f"Review: {' '.join(words[: 4 + (i * 5) % len(words)])} #{i}\nSentiment:" for i in range(sizes.eval_prompts)]


def dry_run_estimate(student: Any, sizes: Sizes) -> float:
    """The dry run's training estimate (models.memory): the student's share in VRAM on a GPU, whole RSS on a CPU."""
    from models.batching import encode_pair
    from models.memory import RUNTIME_MB, estimate_phases, folder_shape

    longest = max(len(encode_pair(student.tokenizer, p, r, sizes.max_length, student.eos_id).input_ids)
                  for p, r in train_pairs(sizes))
    on_gpu = student.plan.device == "cuda"
    est = estimate_phases(folder_shape(student.folder), None, batch_size=sizes.batch, longest_tokens=longest,
                          eval_batch=sizes.eval_batch, eval_tokens=sizes.max_length, n_ctx=0, on_gpu=on_gpu,
                          mode=student.plan.mode)
    return round(est.train_mb - (RUNTIME_MB if on_gpu else 0), 1)


def measure_training(student: Any, sizes: Sizes, out: Path) -> dict[str, Any]:
    """A 2-step warm-up, then STEPS optimizer steps on one batch: tokens/s, peaks, losses and the dry-run estimate."""
    from models.params import TrainParams
    from models.student_train import StudentTrainer

    params = TrainParams(steps=STEPS, batch_size=sizes.batch, learning_rate=sizes.lr, warmup_ratio=0.0,
                         scheduler="constant")
    pairs = train_pairs(sizes)
    trainer = StudentTrainer(student)
    if student.plan.device == "cuda":  # first-call kernel set-up and QLoRA's k-bit preparation stay out of the timing
        trainer.train(pairs, TrainParams(steps=2, batch_size=sizes.batch, learning_rate=sizes.lr), seed=0, out_dir=out / "warm")
    stats = trainer.train(pairs, params, seed=0, out_dir=out / "adapter")
    return {"mode": student.plan.mode, "device": student.plan.device, "tokens_per_s": stats.tokens_per_s,
            "peak_vram_mb": stats.peak_vram_mb, "peak_rss_mb": stats.peak_rss_mb, "losses": stats.losses,
            "estimate_mb": dry_run_estimate(student, sizes), "seconds": stats.seconds, "batch": sizes.batch,
            "tokens_per_step": stats.tokens // max(stats.steps, 1)}


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    """fn(*args) and its wall time."""
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def measure_eval(student: Any, sizes: Sizes) -> dict[str, Any]:
    """score_options and generate, batched vs one prompt at a time (the same prompts; a warm-up call first)."""
    from models.student_score import StudentScorer

    scorer = StudentScorer(student)
    prompts = eval_prompts(sizes)
    options = [OPTIONS] * len(prompts)
    scorer.score_options(prompts[:2], options[:2], sizes.eval_batch)
    scorer.generate(prompts[:2], sizes.new_tokens, ["\n"], sizes.eval_batch)
    out: dict[str, Any] = {"prompts": len(prompts)}
    for name, batch in (("one", 1), ("batched", sizes.eval_batch)):
        scores, s_sec = timed(scorer.score_options, prompts, options, batch)
        texts, g_sec = timed(scorer.generate, prompts, sizes.new_tokens, ["\n"], batch)
        out[name] = {"score_per_s": round(len(prompts) / s_sec, 2), "generate_per_s": round(len(prompts) / g_sec, 2),
                     "picks": [max(range(len(s)), key=s.__getitem__) for s in scores], "texts": texts}
    return out


def training_rows(name: str, base: dict[str, Any], qlora: dict[str, Any]) -> list[Row]:
    """Tokens/s, peak VRAM against the estimate, and the loss over STEPS steps: baseline LoRA vs QLoRA NF4."""
    rows = [Row(f"{name}: train tok/s", f"{base['mode']} {base['tokens_per_s']}", f"{qlora['mode']} {qlora['tokens_per_s']}",
                ratio(qlora["tokens_per_s"], base["tokens_per_s"]),
                f"batch {qlora['batch']} × {qlora['tokens_per_step']} tokens on {qlora['device']}",
                data={"baseline": base, "qlora": qlora})]
    if qlora["peak_vram_mb"] is None:
        rows.append(Row(f"{name}: train peak VRAM MB", "n/a (cpu)", "n/a (cpu)", None,
                        f"skipped, needs CUDA; peak RSS {base['peak_rss_mb']:.0f} / {qlora['peak_rss_mb']:.0f} MB, "
                        f"dry-run RSS estimate {base['estimate_mb']:.0f} / {qlora['estimate_mb']:.0f} MB"))
    else:
        off = qlora["peak_vram_mb"] / qlora["estimate_mb"] if qlora["estimate_mb"] else None
        rows.append(Row(f"{name}: train peak VRAM MB", f"{base['mode']} {base['peak_vram_mb']:.0f}",
                        f"{qlora['mode']} {qlora['peak_vram_mb']:.0f}", ratio(qlora["peak_vram_mb"], base["peak_vram_mb"]),
                        f"dry-run estimate {qlora['estimate_mb']:.0f} MB (measured/estimate {off:.2f}; the dry run "
                        f"assumes NF4 for any GPU plan, {base['estimate_mb']:.0f} MB for {base['mode']})"))
    rows.append(loss_row(name, base, qlora))
    return rows


def loss_row(name: str, base: dict[str, Any], qlora: dict[str, Any]) -> Row:
    """First and last step losses of both modes; fails unless both fell."""
    fell = all(r["losses"][-1] < r["losses"][0] for r in (base, qlora))
    shown = [f"{r['mode']} {r['losses'][0]:.3f} → {r['losses'][-1]:.3f}" for r in (base, qlora)]
    return Row(f"{name}: train loss, {STEPS} steps", shown[0], shown[1], None,
               "fell in both modes" if fell else "FAIL: the loss did not fall", ok=fell,
               data={"baseline": base["losses"], "qlora": qlora["losses"]})


def eval_rows(name: str, mode: str, ev: dict[str, Any]) -> list[Row]:
    """Batched vs one-at-a-time prompts/s for scoring and for generation."""
    one, batched = ev["one"], ev["batched"]
    same_picks = sum(a == b for a, b in zip(one["picks"], batched["picks"]))
    same_texts = sum(a == b for a, b in zip(one["texts"], batched["texts"]))
    n = ev["prompts"]
    return [Row(f"{name}: score_options prompts/s", f"one at a time {one['score_per_s']}", f"batched {batched['score_per_s']}",
                ratio(batched["score_per_s"], one["score_per_s"]), f"{mode}, {n} prompts, same pick {same_picks}/{n}"),
            Row(f"{name}: generate prompts/s", f"one at a time {one['generate_per_s']}", f"batched {batched['generate_per_s']}",
                ratio(batched["generate_per_s"], one["generate_per_s"]), f"{mode}, greedy, same text {same_texts}/{n}")]


def bench_student(shape: Shape, scratch: Path, tokenizer: Any, sizes: Sizes, parts: set[str]) -> tuple[Path, list[Row]]:
    """Write the student, then train it under both plans and evaluate the QLoRA one."""
    folder = write_student(shape, scratch / shape.name, tokenizer, sizes.init_std)
    rows: list[Row] = []
    if "train" in parts or "eval" in parts:
        base = None
        if "train" in parts:
            say(f"{shape.name}: LoRA under plan_training('none')")
            student = load_student(folder, "none", sizes)
            base = measure_training(student, sizes, scratch / f"{shape.name}-lora")
            student.free()
        say(f"{shape.name}: QLoRA under plan_training('nf4')")
        student = load_student(folder, "nf4", sizes)
        if base is not None:
            rows += training_rows(shape.name, base, measure_training(student, sizes, scratch / f"{shape.name}-qlora"))
        if "eval" in parts:
            say(f"{shape.name}: evaluation, batched vs one at a time")
            rows += eval_rows(shape.name, student.plan.mode, measure_eval(student, sizes))
        student.free()
    return folder, rows


def bench_big(scratch: Path, tokenizer: Any, sizes: Sizes) -> list[Row]:
    """The 8B shape, QLoRA only, when the GPU has room for its bf16 build and the disk for its 16 GB folder."""
    import torch

    name = LLAMA_8B.name
    if not cuda():
        return [Row(f"{name}: QLoRA train", "-", "skipped", None, "needs CUDA")]
    free_gb = torch.cuda.mem_get_info()[0] / 2**30
    disk_gb = shutil.disk_usage(scratch).free / 2**30
    if free_gb < 24 or disk_gb < 24:
        return [Row(f"{name}: QLoRA train", "-", "skipped", None,
                    f"needs 24 GiB free VRAM and disk (have {free_gb:.0f} / {disk_gb:.0f} GiB)")]
    say(f"{name}: random bf16 build, then QLoRA")
    folder = write_student(LLAMA_8B, scratch / name, tokenizer, sizes.init_std)
    student = load_student(folder, "nf4", sizes)
    q = measure_training(student, sizes, scratch / f"{name}-qlora")
    student.free()
    shutil.rmtree(folder, ignore_errors=True)
    fell = q["losses"][-1] < q["losses"][0]
    return [Row(f"{name}: QLoRA train tok/s", "-", f"{q['mode']} {q['tokens_per_s']}", None, f"batch {sizes.batch}"),
            Row(f"{name}: QLoRA peak VRAM MB", f"estimate {q['estimate_mb']:.0f}", f"{q['peak_vram_mb']:.0f}",
                ratio(q["peak_vram_mb"], q["estimate_mb"]), "measured / dry-run estimate"),
            Row(f"{name}: QLoRA loss, {STEPS} steps", "-", f"{q['losses'][0]:.3f} → {q['losses'][-1]:.3f}", None,
                "fell" if fell else "FAIL: the loss did not fall", ok=fell)]


# ------------------------------------------------------------------------------------------- teacher


def measure_teacher(path: Path, mode: str, sizes: Sizes) -> dict[str, Any]:
    """Load the teacher in one mode with every layer offloaded, warm up, generate: tokens/s, info, VRAM taken."""
    import torch
    from bench_teacher import build_requests

    from models.teacher.llama_cpp import LlamaCppTeacher
    from models.teacher.own_process import ProcessTeacher

    reqs = build_requests(sizes.teacher_requests, sizes.teacher_max_tokens, 0.7)
    free_before = torch.cuda.mem_get_info()[0] if cuda() else None
    # On CUDA the product runs the teacher in its own process (models/teacher/own_process.py): so does the bench.
    cls = ProcessTeacher if cuda() else LlamaCppTeacher
    teacher = cls(path, n_ctx=8192, parallel=8 if mode == "batched" else 1, n_gpu_layers=-1, retries=0,
                              n_threads=sizes.threads, mode=mode)  # type: ignore[arg-type]
    teacher.generate(reqs[:1])
    replies, wall = timed(teacher.generate, reqs)
    vram = (free_before - torch.cuda.mem_get_info()[0]) / 2**20 if free_before is not None else None
    info = teacher.info()
    teacher.close()
    tokens = sum(r.tokens_out for r in replies)
    return {"mode": mode, "tokens_per_s": round(tokens / wall, 1), "valid": sum(r.error is None for r in replies),
            "replies": len(replies), "info": info, "vram_mb": vram}


def teacher_row(path: Path, name: str, sizes: Sizes) -> Row:
    """Batched (parallel 8) vs sequential tokens/s, and what llama.cpp says it offloaded."""
    from engine.run.model_slots import describe_teacher

    seq, bat = (measure_teacher(path, mode, sizes) for mode in ("sequential", "batched"))
    info = bat["info"]
    layers = f"{info['n_gpu_layers_offloaded']}/{info['n_layer'] + 1} layers offloaded"
    on_gpu = cuda()
    if on_gpu:
        # info() derives the offloaded count from the build's support; the VRAM llama.cpp took is the evidence.
        file_mb = path.stat().st_size / 2**20
        full = info["n_gpu_layers_offloaded"] == info["n_layer"] + 1 and bat["vram_mb"] >= 0.8 * file_mb
        note = (f"{layers}, llama.cpp took {bat['vram_mb']:.0f} MB VRAM for a {file_mb:.0f} MB file"
                + ("" if full else f"; FAIL: {describe_teacher(info)}"))
    else:
        full, note = None, f"{layers} (offload needs CUDA: skipped), gpu_offload_supported {info['gpu_offload_supported']}"
    return Row(f"teacher {name}: tok/s", f"sequential {seq['tokens_per_s']}", f"batched ×8 {bat['tokens_per_s']}",
               ratio(bat["tokens_per_s"], seq["tokens_per_s"]),
               note + f"; valid {seq['valid']}/{seq['replies']} vs {bat['valid']}/{bat['replies']}", ok=full,
               data={"sequential": seq, "batched": bat})


# ------------------------------------------------------------------------------------------- a whole run


def run_config(student: Path, teacher: Path, store: Path, tiny: bool) -> dict[str, Any]:
    """A 2-round sentiment run on 8 real seed rows (tests/conftest.py's tiny run) with these models and QLoRA."""
    return {
        "name": "gpu-bench", "seed": 7, "store": str(store),
        "task": {"preset": "rotten_tomatoes"},
        "data": {"pool": str(POOL), "seed_size": 8, "validation_size": 6, "test_size": 6, "split_seed": 1},
        "student": {"model": str(student), "quantization": "nf4", "max_length": 128 if tiny else 256},
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "train": {"epochs": 1 if tiny else 2, "batch_size": 4, "learning_rate": 1e-2 if tiny else 1e-3},
        "eval": {"batch_size": 8, "max_new_tokens": 4 if tiny else 8},
        "teacher": {"model": str(teacher), "n_ctx": 8192, "parallel": 4, "max_tokens": 128 if tiny else 512,
                    "retries": 0 if tiny else 1, "temperature": 0.8, "n_gpu_layers": -1, **({"n_threads": 1} if tiny else {})},
        "loop": {"rounds": 2, "examples_per_miss": 2, "score_test_every_round": not tiny},
    }


def run_row(student: Path, teacher: Path, scratch: Path, tiny: bool) -> Row:
    """`l2l run` in a subprocess, then the store: the plan is qlora-nf4 and every phase carries its peak memory."""
    import tomli_w

    from engine.store.db import Store

    store_path = scratch / "run" / "l2l.db"
    config = scratch / "run" / "gpu-bench.toml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(tomli_w.dumps(run_config(student, teacher, store_path, tiny)), encoding="utf-8")
    env = {**os.environ, "L2L_HOME": str(scratch / "home"), "L2L_MODEL_CACHE": str(scratch / "models")}
    if tiny:
        env["OMP_NUM_THREADS"] = "1"
    say("l2l run, 2 rounds")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "run", str(config), "--store", str(store_path)],
                          cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0 or not store_path.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return Row("LLM2LLM run, 2 rounds (CLI)", "-", f"exit {proc.returncode}", None, "FAIL: " + " | ".join(tail), ok=False)
    store = Store(store_path)
    run = store.runs()[0]
    rounds = store.rounds(run.id)
    store.close()
    return run_check(run, rounds, seconds, cuda())


def run_check(run: Run, rounds: list[Round], seconds: float, on_gpu: bool) -> Row:
    """The run's row: plan mode, status, and the per-phase peak (VRAM on a GPU, RSS recorded either way)."""
    from engine.run.model_slots import describe_teacher

    plan = run.plan or {}
    key = "peak_vram_mb" if on_gpu else "peak_rss_mb"
    peaks: dict[str, float] = {}
    missing = []
    for r in rounds:
        for phase in r.phases:
            m = r.record(phase)
            if key in m:
                peaks[phase] = max(peaks.get(phase, 0.0), m[key])
            else:
                missing.append(f"round {r.idx} {phase}")
    teacher = run.teacher or {}
    # On CUDA the teacher must have run in its own process (llama.cpp after torch's CUDA in one process crashes).
    isolated = bool(teacher.get("process")) or not on_gpu
    ok = (plan.get("mode") == "qlora-nf4" and run.status == "finished" and not missing and bool(peaks)
          and isolated)
    shown = ", ".join(f"{p} {v:.0f}" for p, v in peaks.items())
    note = (f"{len(rounds)} rounds; teacher: {describe_teacher(teacher)}; max {key} per phase: {shown}"
            + (f"; missing in {missing}" if missing else "")
            + ("" if on_gpu else "; peak_vram_mb needs CUDA: skipped")
            + (" (torch's counter: llama.cpp's VRAM in augment/filter is not in it)" if on_gpu else ""))
    if not ok:
        note = f"FAIL: plan {plan.get('mode')}, status {run.status}; " + note
    return Row("LLM2LLM run, 2 rounds (CLI)", "-", f"{run.status}, plan {plan.get('mode')} on {plan.get('device')}",
               None, f"{seconds:.0f} s; " + note, ok=ok, data={"plan": plan, "peaks": peaks})


# ------------------------------------------------------------------------------------------- output


def render(rows: list[Row], title: str) -> str:
    """The table as markdown-shaped text (it pastes into bench/RESULTS.md), under its title."""
    from rich import box
    from rich.console import Console
    from rich.table import Table

    table = Table("check", "baseline", "llm2llm", "ratio", "note", box=box.MARKDOWN)
    for r in rows:
        table.add_row(r.check, r.baseline, r.llm2llm, f"{r.ratio:.2f}×" if r.ratio is not None else "-", r.note)
    console = Console(width=400, soft_wrap=True)
    with console.capture() as captured:
        console.print(table)
    lines = [line.rstrip() for line in captured.get().splitlines() if line.strip()]
    return "\n".join([title, "", *lines])


def main(argv: list[str] | None = None) -> int:
    """Build the models, measure every part, print the table; 1 when a check failed."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="hidden 64, 2 layers: seconds on a CPU")
    parser.add_argument("--big", action="store_true", help="also the 8B llama shape in 4-bit (GPU with room only)")
    parser.add_argument("--parts", default="train,eval,teacher,run", help="comma-separated subset of train,eval,teacher,run")
    parser.add_argument("--scratch", type=Path, help="folder for the models and the run (default: a temp folder, removed)")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    sizes = TINY if args.tiny else REAL
    if sizes.threads:
        import torch

        torch.set_num_threads(sizes.threads)
    tmp = None if args.scratch else tempfile.TemporaryDirectory(prefix="l2l-gpu-bench-")
    scratch = args.scratch or Path(tmp.name)  # type: ignore[union-attr]
    scratch.mkdir(parents=True, exist_ok=True)
    try:
        tokenizer = build_tokenizer(scratch)
        rows: list[Row] = []
        folders = []
        for shape in (TINY_LLAMA, TINY_QWEN) if args.tiny else (LLAMA_1B, QWEN_15B):
            folder, student_rows = bench_student(shape, scratch, tokenizer, sizes, parts)
            folders.append(folder)
            rows += student_rows
        if args.big:
            rows += bench_big(scratch, tokenizer, sizes)
        teacher_shape = TINY_TEACHER if args.tiny else TEACHER
        teacher = None
        if parts & {"teacher", "run"}:
            say(f"writing the {teacher_shape.name} teacher GGUF")
            teacher = write_teacher(teacher_shape, scratch / "teacher.gguf")
        if "teacher" in parts and teacher is not None:
            rows.append(teacher_row(teacher, teacher_shape.name, sizes))
        if "run" in parts and teacher is not None:
            rows.append(run_row(folders[0], teacher, scratch, args.tiny))
        shapes = "tiny shapes" if args.tiny else "real shapes, random weights"
        print(render(rows, f"llm2llm GPU bench on {device_name()} ({shapes})"), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"device": device_name(), "tiny": args.tiny, "rows": [asdict(r) for r in rows]},
                                            indent=1, default=str), encoding="utf-8")
        return 1 if any(r.ok is False for r in rows) else 0
    finally:
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
