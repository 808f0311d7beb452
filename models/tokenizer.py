"""Load only a student's tokenizer (for dry runs and token counts), from an HF folder or a GGUF file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from models.errors import ModelNotFoundError


def load_tokenizer(model_path: Path) -> Any:
    """The tokenizer of a local HF folder or GGUF file, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    path = Path(model_path)
    if path.is_dir():
        return AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if path.suffix == ".gguf" and path.exists():
        return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name, local_files_only=True)
    raise ModelNotFoundError(f"{path}: no Hugging Face folder or .gguf file here")
