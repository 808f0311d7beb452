"""Model files checked from their headers alone, before a run is created: a GGUF's header and tensor table (every
tensor's data inside the file), a Hugging Face folder's config, weights (safetensors headers) and tokenizer, and
whether the student path (transformers + peft LoRA) can train the architecture. Each problem is one line naming the file."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

from models.errors import ModelFileError

GGUF_MAGIC = b"GGUF"
# Architectures transformers can load from a GGUF as a causal LM (its GGUF_SUPPORTED_ARCHITECTURES without the
# seq2seq and pseudo entries; tests/test_model_check.py keeps this a subset of transformers' list).
GGUF_TRAINABLE = ("llama", "mistral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "falcon", "phi3", "bloom", "stablelm",
                  "gpt2", "starcoder2", "mamba", "nemotron", "gemma2", "gemma3", "gemma4", "lfm2", "gpt_oss", "deci",
                  "minimax_m2")
# LoRA target module (Hugging Face name) → the GGUF tensor name part that becomes it.
GGUF_MODULES = {"q_proj": "attn_q", "k_proj": "attn_k", "v_proj": "attn_v", "o_proj": "attn_output",
                "gate_proj": "ffn_gate", "up_proj": "ffn_up", "down_proj": "ffn_down", "qkv_proj": "attn_qkv",
                "c_attn": "attn_qkv", "query_key_value": "attn_qkv"}
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = (("tokenizer.json",), ("tokenizer.model",), ("vocab.json", "merges.txt"), ("vocab.txt",), ("spiece.model",))
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
_MAX_COUNT = 1 << 40


@dataclass
class GGUFHeader:
    """What a GGUF file declares: metadata (arrays of strings kept only as counts), tensors and where data starts."""

    version: int
    metadata: dict[str, Any] = field(default_factory=dict)
    tensors: list[tuple[str, tuple[int, ...], int, int]] = field(default_factory=list)  # name, dims, type, offset
    data_start: int = 0


class _Reader:
    """Little-endian reads that fail with the file's name and the place it ended."""

    def __init__(self, fh: BinaryIO, path: Path, size: int) -> None:
        self.fh, self.path, self.size = fh, path, size

    def take(self, n: int) -> bytes:
        if n < 0 or self.fh.tell() + n > self.size:
            raise ModelFileError(f"{self.path}: truncated GGUF: the header runs past the end of the file "
                                 f"({self.size} bytes)")
        return self.fh.read(n)

    def unpack(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        return self.take(self.unpack("<Q")).decode("utf-8", errors="replace")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item, count = self.unpack("<I"), self.unpack("<Q")
            if count > _MAX_COUNT:
                raise ModelFileError(f"{self.path}: corrupt GGUF header (an array of {count} items)")
            if item in _SCALARS:
                width = struct.calcsize(_SCALARS[item])
                data = self.take(width * count)
                return list(struct.unpack(f"<{count}{_SCALARS[item][1]}", data)) if count <= 64 else count
            for _ in range(count):  # strings (a vocabulary): skipped, only counted
                self.value(item)
            return count
        raise ModelFileError(f"{self.path}: corrupt GGUF header (unknown value type {kind})")


def read_gguf_header(path: Path) -> GGUFHeader:
    """Parse a GGUF's header and tensor table (no tensor data is read); ModelFileError on anything malformed."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        if head != GGUF_MAGIC:
            what = f"it starts with {head!r}, not b'GGUF'" if head else "it is empty"
            raise ModelFileError(f"{path}: not a GGUF file ({what})")
        r = _Reader(fh, path, size)
        version = r.unpack("<I")
        if version not in (2, 3):
            raise ModelFileError(f"{path}: GGUF version {version} is not supported (2 or 3)")
        n_tensors, n_kv = r.unpack("<Q"), r.unpack("<Q")
        if n_tensors > _MAX_COUNT or n_kv > _MAX_COUNT:
            raise ModelFileError(f"{path}: corrupt GGUF header ({n_tensors} tensors, {n_kv} metadata keys)")
        header = GGUFHeader(version=version)
        for _ in range(n_kv):
            key = r.string()
            header.metadata[key] = r.value(r.unpack("<I"))
        for _ in range(n_tensors):
            name = r.string()
            n_dims = r.unpack("<I")
            if n_dims > 8:
                raise ModelFileError(f"{path}: corrupt GGUF tensor table ({name!r} has {n_dims} dimensions)")
            dims = tuple(r.unpack("<Q") for _ in range(n_dims))
            header.tensors.append((name, dims, r.unpack("<I"), r.unpack("<Q")))
        alignment = int(header.metadata.get("general.alignment", 32) or 32)
        header.data_start = -(-fh.tell() // alignment) * alignment
    return header


def tensor_bytes(dims: Sequence[int], kind: int) -> int | None:
    """Bytes of a tensor's data (None for a type this gguf package does not know)."""
    import gguf

    try:
        block, type_size = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType(kind)]
    except (ValueError, KeyError):
        return None
    count = 1
    for d in dims:
        count *= d
    return count // block * type_size


def check_gguf(path: Path, role: Literal["student", "teacher"], lora_targets: Sequence[str] = ()) -> GGUFHeader:
    """A GGUF whose header parses, whose every tensor lies inside the file, with an architecture and a vocabulary;
    a student's architecture must be one transformers loads from GGUF and have a module LoRA can target."""
    path = Path(path)
    header = read_gguf_header(path)
    size = path.stat().st_size
    if not header.tensors:
        raise ModelFileError(f"{path}: GGUF holds no tensors")
    for name, dims, kind, offset in header.tensors:
        nbytes = tensor_bytes(dims, kind)
        if nbytes is None:
            raise ModelFileError(f"{path}: tensor {name!r} has unknown type {kind}")
        end = header.data_start + offset + nbytes
        if end > size:
            raise ModelFileError(f"{path}: truncated GGUF: tensor {name!r} ends at byte {end} but the file has {size} "
                                 f"bytes (an interrupted download or copy?)")
    arch = header.metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(f"{path}: GGUF has no general.architecture")
    if "tokenizer.ggml.tokens" not in header.metadata:
        raise ModelFileError(f"{path}: GGUF has no vocabulary (tokenizer.ggml.tokens)")
    if role == "student":
        if arch not in GGUF_TRAINABLE:
            raise ModelFileError(f"{path}: architecture {arch!r} cannot be trained by the student path (transformers "
                                 f"loads {', '.join(GGUF_TRAINABLE)} from GGUF)")
        names = {n for n, *_ in header.tensors}
        _check_targets(path, lora_targets, lambda module: GGUF_MODULES.get(module) is None or any(
            f".{GGUF_MODULES[module]}." in f".{n}" for n in names))
    return header


def _check_targets(path: Path, targets: Sequence[str], present: Any) -> None:
    """peft fails when none of the LoRA target modules exists in the model."""
    wanted = [t for t in targets if t != "all-linear"]
    if wanted and not any(present(t) for t in wanted):
        raise ModelFileError(f"{path}: none of lora.target_modules ({', '.join(wanted)}) exists in this model; "
                             "set lora.target_modules to its module names")


def safetensors_names(path: Path) -> list[str]:
    """Tensor names of a .safetensors file, after checking its header and that the data it declares is there."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) < 8:
            raise ModelFileError(f"{path}: truncated safetensors file ({size} bytes)")
        n = struct.unpack("<Q", raw)[0]
        if n > size - 8:
            raise ModelFileError(f"{path}: truncated safetensors file (header of {n} bytes, file of {size})")
        try:
            meta = json.loads(fh.read(n))
        except ValueError:
            raise ModelFileError(f"{path}: not a safetensors file (its header is not JSON)") from None
    ends = [int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__" and isinstance(v, dict)]
    if ends and 8 + n + max(ends) > size:
        raise ModelFileError(f"{path}: truncated safetensors file: its tensors need {8 + n + max(ends)} bytes, the "
                             f"file has {size}")
    return [k for k in meta if k != "__metadata__"]


def check_hf_folder(folder: Path, lora_targets: Sequence[str] = ()) -> None:
    """A Hugging Face causal-LM folder: config.json, every weight file it needs (safetensors data present), a tokenizer."""
    folder = Path(folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise ModelFileError(f"{config_path}: missing (not a Hugging Face model folder)")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ModelFileError(f"{config_path}: not valid JSON ({err})") from None
    architectures = config.get("architectures") or []
    if architectures and not any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in architectures):
        raise ModelFileError(f"{config_path}: architecture {', '.join(architectures)} is not a causal language model; "
                             "the student path trains AutoModelForCausalLM models")
    present = [name for name in WEIGHT_FILES if (folder / name).is_file()]
    if not present:
        raise ModelFileError(f"{folder}: no weights file ({', '.join(WEIGHT_FILES)})")
    names: list[str] | None = None
    if "model.safetensors" in present:
        names = safetensors_names(folder / "model.safetensors")
    elif present[0].endswith(".index.json"):
        index_path = folder / present[0]
        try:
            weight_map = json.loads(index_path.read_text(encoding="utf-8"))["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise ModelFileError(f"{index_path}: not a weight index (no weight_map)") from None
        for shard in sorted(set(weight_map.values())):
            if not (folder / shard).is_file():
                raise ModelFileError(f"{folder / shard}: missing (listed in {present[0]})")
            if shard.endswith(".safetensors"):
                safetensors_names(folder / shard)
        names = list(weight_map)
    if not any(all((folder / f).is_file() for f in group) for group in TOKENIZER_FILES):
        wanted = " or ".join("+".join(g) for g in TOKENIZER_FILES)
        raise ModelFileError(f"{folder}: no tokenizer files ({wanted})")
    if names is not None:
        _check_targets(folder, lora_targets, lambda module: any(f".{module}." in f".{n}" for n in names))


def check_model(path: Path, role: Literal["student", "teacher"], lora_targets: Sequence[str] = ()) -> None:
    """The student (a GGUF file or a Hugging Face folder) or the llama.cpp teacher (a GGUF file), checked from headers."""
    path = Path(path)
    if path.is_dir():
        if role == "teacher":
            raise ModelFileError(f"{path}: the llama.cpp teacher needs a .gguf file, not a folder")
        check_hf_folder(path, lora_targets)
    else:
        check_gguf(path, role, lora_targets)
