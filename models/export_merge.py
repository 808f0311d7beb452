"""A LoRA adapter folded into a 16-bit copy of its base, saved as a Hugging Face folder (model, tokenizer, generation)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Literal

from models.errors import ModelFileError

Dtype = Literal["float16", "bfloat16"]


def merge_adapter(base: Path, adapter: Path, out: Path, *, dtype: Dtype = "float16",
                  max_new_tokens: int | None = None) -> Path:
    """Load `base` in 16 bit (never 4-bit: a QLoRA run's base is reloaded unquantized), merge `adapter`, save to `out`.

    The generation config asks for greedy decoding with the tokenizer's EOS and padding, as the run evaluated.
    """
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    base, adapter, out = Path(base), Path(adapter), Path(out)
    if dtype not in ("float16", "bfloat16"):
        raise ModelFileError(f"merge dtype must be float16 or bfloat16, not {dtype!r}")
    config = json.loads((base / "config.json").read_text(encoding="utf-8"))
    if config.get("quantization_config"):
        raise ModelFileError(f"{base}: a quantized checkpoint; the adapter is merged into a 16-bit base only")
    if not (adapter / "adapter_config.json").is_file():
        raise ModelFileError(f"{adapter}: no adapter_config.json, not a saved adapter")
    model = AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype), local_files_only=True,
                                                 device_map={"": "cpu"})
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    eos = tokenizer.eos_token_id
    old = merged.generation_config
    eos_ids = sorted({eos, *(old.eos_token_id if isinstance(old.eos_token_id, list) else [old.eos_token_id])} - {None})
    merged.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=eos_ids[0] if len(eos_ids) == 1 else eos_ids,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos, do_sample=False,
        **({"max_new_tokens": max_new_tokens} if max_new_tokens else {}))
    merged.config.dtype = getattr(torch, dtype)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
