"""Peak-memory estimate of a run before it starts (`l2l run --dry-run`), and handing freed heap back to the OS.

The estimate adds up what each phase holds: the Python runtime with torch, transformers, peft and
llama.cpp imported; the student's weights; training activations, which grow with the tokens of the
largest batch; the teacher's GGUF file (memory-mapped, all of it touched), its KV cache and compute
buffers. The two constants that cannot be derived from shapes alone were measured on this project's CPU
machine and are named below; `bench/bench_memory.py` checks the estimate against what runs measured.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MB = 2**20
# RSS of a worker after importing torch, transformers, peft, llama_cpp and the engine (measured: 470 MB).
RUNTIME_MB = 470
# fp32 values autograd keeps per token, per layer, per unit of (hidden + intermediate) width while training
# LoRA on every projection on the CPU. Measured with SmolLM2-135M (30 layers, 576 + 1536 wide), batch 8:
# 3.2 MB per token of the largest batch on sentiment (63 tokens), 3.7 MB on GSM8K (256); 14.6 ≈ 3.7 MB.
TRAIN_ACT_PER_TOKEN_WIDTH = 14.6
# What a worker keeps after a training phase even with its heap handed back (torch's caches, tokenizer,
# fragmentation): measured 435 MB before evaluation and about 700 MB before the teacher on the demo.
RESIDUE_MB = 450
# llama.cpp compute buffer and output logits: roughly one n_batch of hidden-size scratch plus logits.
TEACHER_N_BATCH = 512


@dataclass(frozen=True)
class Shape:
    """What the estimate needs to know about a decoder-only model."""

    params: int
    layers: int
    hidden: int
    intermediate: int
    kv_dim: int
    vocab: int
    file_bytes: int


def gguf_shape(path: Path) -> Shape:
    """Model shape read from a GGUF file's metadata (no weights are loaded)."""
    from gguf import GGUFReader

    reader = GGUFReader(path)

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return f.contents() if f is not None else None

    arch = field("general.architecture")
    hidden = int(field(f"{arch}.embedding_length"))
    heads = int(field(f"{arch}.attention.head_count"))
    kv_heads = int(field(f"{arch}.attention.head_count_kv") or heads)
    tokens = reader.fields.get("tokenizer.ggml.tokens")
    return Shape(params=sum(int(t.n_elements) for t in reader.tensors), layers=int(field(f"{arch}.block_count")),
                 hidden=hidden, intermediate=int(field(f"{arch}.feed_forward_length")),
                 kv_dim=hidden // heads * kv_heads, vocab=len(tokens.data) if tokens is not None else 0,
                 file_bytes=path.stat().st_size)


def folder_shape(folder: Path) -> Shape:
    """Model shape from a Hugging Face folder's config.json and safetensors headers."""
    cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    cfg = cfg.get("text_config", cfg)
    hidden, heads = int(cfg["hidden_size"]), int(cfg["num_attention_heads"])
    params = 0
    files = sorted(folder.glob("*.safetensors"))
    for file in files:
        with file.open("rb") as fh:
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, info in header.items():
            if name != "__metadata__":
                n = 1
                for d in info["shape"]:
                    n *= d
                params += n
    return Shape(params=params, layers=int(cfg["num_hidden_layers"]), hidden=hidden,
                 intermediate=int(cfg["intermediate_size"]),
                 kv_dim=int(cfg.get("head_dim") or hidden // heads) * int(cfg.get("num_key_value_heads") or heads),
                 vocab=int(cfg["vocab_size"]), file_bytes=sum(f.stat().st_size for f in files))


def model_shape(path: Path) -> Shape:
    """Shape of a .gguf file or a Hugging Face folder."""
    return gguf_shape(path) if path.suffix == ".gguf" else folder_shape(path)


@dataclass(frozen=True)
class PhaseEstimate:
    """Estimated peak resident memory per phase (MB) and the one that bounds the run."""

    train_mb: float
    eval_mb: float
    teacher_mb: float | None
    on_gpu: bool

    @property
    def peak_mb(self) -> float:
        """The largest phase."""
        return max(self.train_mb, self.eval_mb, self.teacher_mb or 0.0)


# Bytes a student parameter takes in each training mode (NF4 counts its bf16 norms and embeddings).
BYTES_PER_PARAM = {"qlora-nf4": 0.56, "lora-bf16": 2.0, "lora-fp32": 4.0}


def estimate_phases(student: Shape, teacher: Shape | None, *, batch_size: int, longest_tokens: int,
                    eval_batch: int, eval_tokens: int, n_ctx: int, on_gpu: bool = False,
                    mode: str = "lora-fp32") -> PhaseEstimate:
    """Per-phase peak memory for the training mode; on a GPU the student's share is VRAM, in bf16 compute."""
    weight_bytes = BYTES_PER_PARAM[mode] * student.params
    width = student.hidden + student.intermediate
    act = TRAIN_ACT_PER_TOKEN_WIDTH * 4 * student.layers * width * batch_size * longest_tokens
    if on_gpu and mode != "lora-fp32":
        act /= 2  # bf16 activations
    train = RUNTIME_MB + (weight_bytes + act) / MB
    kv = 4 * 2 * student.layers * student.kv_dim * eval_batch * eval_tokens
    logits = 4 * 2 * eval_batch * student.vocab
    evaluate = RUNTIME_MB + RESIDUE_MB + (weight_bytes + kv + logits) / MB
    teacher_mb = None
    if teacher is not None:
        teacher_kv = 2 * 2 * teacher.layers * teacher.kv_dim * n_ctx  # f16 K and V
        scratch = 4 * TEACHER_N_BATCH * (teacher.vocab + 8 * teacher.hidden)
        teacher_mb = RUNTIME_MB + RESIDUE_MB + (teacher.file_bytes + teacher_kv + scratch) / MB
    return PhaseEstimate(train_mb=train, eval_mb=evaluate, teacher_mb=teacher_mb, on_gpu=on_gpu)


def describe(est: PhaseEstimate) -> dict[str, str]:
    """The estimate as dry-run size rows."""
    where = "RSS (the student's weights and activations in VRAM on a GPU)" if est.on_gpu else "RSS"
    rows = {f"estimated peak {where}": f"{est.peak_mb / 1024:.1f} GB",
            "  train / evaluate phase": f"{est.train_mb / 1024:.1f} GB / {est.eval_mb / 1024:.1f} GB"}
    if est.teacher_mb is not None:
        rows["  teacher phase"] = f"{est.teacher_mb / 1024:.1f} GB"
    return rows


@functools.cache
def _libc() -> Any:
    """The C library, or None where it cannot be found."""
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


def release_heap() -> None:
    """Hand freed heap pages back to the OS (glibc keeps them, which would inflate the next phase's RSS)."""
    trim = getattr(_libc(), "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)
