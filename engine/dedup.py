"""Exact and near-duplicate detection of example texts (no leakage of seed/validation/test into synthetic data)."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Hashable

from rapidfuzz import fuzz, process

_NON_WORD = re.compile(r"[\W_]+")
# math in any of the delimiters MATH problems and teachers use: $$...$$, $...$, \(...\), \[...\]
_MATH = re.compile(r"(?<!\\)\$\$.*?\$\$|(?<!\\)\$[^$]*\$|\\\(.*?\\\)|\\\[.*?\\\]", re.DOTALL)
# a name inside math: one to three letters not part of a command (\tan) or of a longer word
_MATH_NAME = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{1,3}(?![A-Za-z])")


def normalise(text: str) -> str:
    """Casefolded NFKC words separated by single spaces (punctuation and spacing differences vanish)."""
    return _NON_WORD.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def fold_math_names(text: str) -> str:
    """The text with every short name inside math replaced by one letter: a problem that only renames its triangle
    or variables ($\\triangle ABC$ for $\\triangle XYZ$, $y$ for $x$), or writes \\(x\\) for $x$, is the same problem."""
    return _MATH.sub(lambda m: _MATH_NAME.sub("v", m.group(0)), text) if "$" in text or "\\" in text else text


def text_hash(text: str) -> str:
    """Hash of the normalised text: equal for exact duplicates."""
    return hashlib.sha1(normalise(text).encode()).hexdigest()


# a contained text must have this many words and cover this share of the longer text to count as a copy
_MIN_COPY_WORDS = 4
_MIN_COPY_SHARE = 0.5


def _is_copy(a: str, b: str) -> bool:
    """True when one normalised text is a contiguous piece of the other making up at least half of it."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    if short.count(" ") + 1 < _MIN_COPY_WORDS or len(short) < _MIN_COPY_SHARE * len(long):
        return False
    return f" {short} " in f" {long} "


class DedupIndex:
    """Reference texts to compare candidates against, with math names folded (fold_math_names): exact (same
    normalised text), near (rapidfuzz normalised Indel similarity ≥ threshold) and copies (a candidate that is a
    word-aligned piece of a reference, or contains one, covering at least half of the longer text: teachers often
    return a clause of the seed they were shown)."""

    def __init__(self, threshold: float = 0.9) -> None:
        if not 0 < threshold <= 1:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._exact: dict[str, Hashable] = {}
        self._texts: list[str] = []
        self._ids: list[Hashable] = []

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, text: str, id: Hashable) -> None:
        """Add a reference text under an id (the first id of an exact duplicate is kept)."""
        norm = normalise(fold_math_names(text))
        key = hashlib.sha1(norm.encode()).hexdigest()
        self._exact.setdefault(key, id)
        self._texts.append(norm)
        self._ids.append(id)

    def match(self, text: str) -> tuple[str, Hashable] | None:
        """('exact_duplicate', id) or ('near_duplicate', id) of the reference it duplicates, or None."""
        norm = normalise(fold_math_names(text))
        hit = self._exact.get(hashlib.sha1(norm.encode()).hexdigest())
        if hit is not None:
            return "exact_duplicate", hit
        if self.threshold >= 1 or not self._texts:
            return None
        for ref, id in zip(self._texts, self._ids, strict=True):
            if _is_copy(norm, ref):
                return "near_duplicate", id
        # extractOne with a cutoff skips references whose length alone rules the score out
        best = process.extractOne(norm, self._texts, scorer=fuzz.ratio, score_cutoff=self.threshold * 100)
        if best is None:
            return None
        return "near_duplicate", self._ids[best[2]]
