"""Turn a student model reference (HF folder or .gguf file) into a Hugging Face folder, converting a GGUF once."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from models.catalog import sha256_file
from models.errors import ModelNotFoundError

os.environ["HF_HUB_OFFLINE"] = "1"

SHA_PREFIX = 16


def resolve_student_folder(
    model: str | Path, cache_dir: Path, on_progress: Callable[[str], None] | None = None
) -> Path:
    """A Hugging Face folder for `model`: a folder with config.json as is, a .gguf converted once into cache_dir/hf/<sha>/."""
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelNotFoundError(
            f"student model not found: {path} (expected a Hugging Face folder with config.json or a .gguf file)"
        )
    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        raise ModelNotFoundError(f"{path}: folder has no config.json, so it is not a Hugging Face model folder")
    if path.suffix.lower() != ".gguf":
        raise ModelNotFoundError(f"{path}: not a .gguf file nor a Hugging Face folder with config.json")
    return _converted(path.resolve(), Path(cache_dir), on_progress or (lambda _msg: None))


def _converted(gguf: Path, cache_dir: Path, say: Callable[[str], None]) -> Path:
    """The cached HF folder of a GGUF file, converting it when absent."""
    say(f"hashing {gguf.name}")
    sha = sha256_file(gguf)
    final = cache_dir / "hf" / sha[:SHA_PREFIX]
    if (final / "source.json").is_file() and (final / "config.json").is_file():
        say(f"cache hit: {final}")
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".tmp-{sha[:SHA_PREFIX]}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    started = time.perf_counter()
    try:
        _convert_into(gguf, tmp, say)
        (tmp / "source.json").write_text(
            json.dumps(
                {"gguf": str(gguf), "sha256": sha, "size": gguf.stat().st_size, "seconds": round(time.perf_counter() - started, 2)},
                indent=2,
            )
        )
        try:
            os.rename(tmp, final)
        except OSError:
            # Another process finished the same conversion first; its folder is equivalent.
            if not (final / "source.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    say(f"converted in {time.perf_counter() - started:.1f}s: {final}")
    return final


def _convert_into(gguf: Path, out: Path, say: Callable[[str], None]) -> None:
    """Dequantize a GGUF with transformers and save it as a plain fp32 HF folder (model + tokenizer)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    say(f"loading {name} (dequantizing to fp32)")
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True, dtype=torch.float32)
    # A GGUF-loaded model refuses save_pretrained and 4-bit reloading; a fresh model with the same weights does not.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    config.dtype = torch.float32
    fresh = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    fresh.load_state_dict(loaded.state_dict(), strict=True)
    fresh.generation_config = loaded.generation_config
    del loaded
    say("saving Hugging Face folder")
    out.mkdir(parents=True)
    fresh.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
