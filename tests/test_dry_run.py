"""The dry run shows each training sequence's tokens with the loss mask, readable even for multi-byte text."""

from __future__ import annotations

from pathlib import Path

from engine.tools.dry_run import masked_text
from models.tokenizer import load_tokenizer


def test_multi_byte_characters_survive_token_by_token_rendering(tiny_gguf: Path) -> None:
    tokenizer = load_tokenizer(tiny_gguf)  # byte-level BPE: 'é' and '😀' are several tokens each
    prompt = "Review: Um filme é ótimo — ça va 😀\nSentiment:"
    text, n_tokens, n_loss = masked_text(tokenizer, prompt, " positive", 256)
    assert text.plain == prompt + " positive⟨eos⟩"
    assert "\ufffd" not in text.plain
    assert n_loss == len(tokenizer(" positive", add_special_tokens=False)["input_ids"]) + 1
    assert n_tokens > n_loss
