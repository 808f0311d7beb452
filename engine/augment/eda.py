"""The `eda` arm's writer: word-level edits of a miss (swap, delete, insert, replace), no model and no lexicon."""

from __future__ import annotations

import random
import re
from collections.abc import Iterable

_WORD = re.compile(r"\S+")
_PLAIN = re.compile(r"^[A-Za-z][A-Za-z'-]*$")  # words an edit may insert or replace with (no numbers, no LaTeX)
OPERATIONS = ("swap", "delete", "insert", "replace")
EDIT_SHARE = 0.1  # EDA's alpha (Wei and Zou, 2019): words changed per edit, as a share of the text's words


def vocabulary(texts: Iterable[str]) -> list[str]:
    """The plain words of the seed texts (the replacement and insertion stock), sorted for determinism."""
    return sorted({w.lower() for t in texts for w in _WORD.findall(t) if _PLAIN.match(w) and len(w) > 2})


def edit(text: str, vocab: list[str], rng: random.Random) -> str:
    """One edited copy of `text`: max(1, alpha * words) random operations, each one of swap, delete, insert, replace."""
    words = _WORD.findall(text)
    if len(words) < 2:
        return text
    for _ in range(max(1, round(EDIT_SHARE * len(words)))):
        op = rng.choice(OPERATIONS)
        if op == "swap":
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
        elif op == "delete" and len(words) > 2:
            del words[rng.randrange(len(words))]
        elif op == "insert" and vocab:
            words.insert(rng.randrange(len(words) + 1), rng.choice(vocab))
        elif op == "replace" and vocab:
            plain = [i for i, w in enumerate(words) if _PLAIN.match(w)]
            if plain:
                words[rng.choice(plain)] = rng.choice(vocab)
    return " ".join(words)


def edits(text: str, k: int, vocab: list[str], rng: random.Random, tries: int = 4) -> list[str]:
    """Up to k distinct edits of `text`, none equal to it (a few extra draws make up for repeats)."""
    out: list[str] = []
    for _ in range(k * tries):
        if len(out) == k:
            break
        new = edit(text, vocab, rng)
        if new != text and new not in out:
            out.append(new)
    return out
