"""Exact and near-duplicate detection of example texts (no leakage of seed/validation/test into synthetic data), and
restatements: a candidate that rewords the example it was written from or a sibling written from the same one."""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Hashable
from dataclasses import dataclass

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


# --- restatements -------------------------------------------------------------------------------------------------
# A teacher often rewords the example it was shown ("In triangle ABC, we have an acute angle X and the tangent of angle
# Y is 3/4 ..." for "In $\triangle XYZ$, ... $\tan Y = \frac34$ ..."): too far apart for the near-duplicate ratio, but
# nearly every content word of one text is in the other. bench/restatement_fp.py measured the guards and the threshold
# on real rows of five data sets (nearest same-label neighbour and random same-label pairs).
RESTATEMENT = 0.8  # default word containment at or above which a candidate restates its parent or a sibling
RESTATEMENT_MIN_WORDS = 10  # either text with fewer distinct content words than this: exempt (short texts contain or are contained too easily)
RESTATEMENT_MIN_SHARE = 0.6  # the smaller word set must be at least this share of the larger (a short text inside a long one is no restatement)
RESTATEMENT_MIN_NUMBERS = 2 / 3  # Jaccard of the two texts' number sets (a problem with other numbers asks something else)

# LaTeX that only formats: \frac{3}{4} and 3/4 both read "3 4", \angle X = 90^\circ reads "angle x 90"
_LATEX_MARKUP = re.compile(r"\\(?:[dt]?frac|circ|cdot|left|right|text\w*|math\w+|operatorname|quad|qquad|displaystyle|"
                           r"begin|end|[lc]?dots|boxed|limits|over)(?![A-Za-z])")
_FRAC_DIGITS = re.compile(r"\\[dt]?frac\s*(\d)\s*(\d)")  # \frac34
_DRAWING = re.compile(r"\[asy\].*?(?:\[/asy\]|$)", re.DOTALL | re.IGNORECASE)  # Asymptote code of a figure: no words
_NUMBER = re.compile(r"\d+")
# English function words and request words: a restatement swaps "then what is" for "find the", which says nothing
_FUNCTION_WORDS = frozenset(
    "a an the and or but if then so than that this these those is are was were be been being has have had do does did "
    "of to in on at by for from with as into about it its they their there what which who whom whose when where why how "
    "find compute determine would could should can will may must not no i you he she we his her him our your my me us "
    "them".split())


@dataclass(frozen=True)
class ContentWords:
    """A text's content words for containment: LaTeX markup dropped, casefolded, function words left out."""

    text: str  # the distinct words, sorted, joined by spaces
    size: int
    numbers: frozenset[str]

    @classmethod
    def of(cls, text: str) -> ContentWords:
        """The content words of a text (math names are kept: a reworded problem spells them out)."""
        if "[asy]" in text.casefold():
            text = _DRAWING.sub(" ", text)
        if "\\" in text:
            text = _LATEX_MARKUP.sub(" ", _FRAC_DIGITS.sub(r" \1 \2 ", text))
        words = sorted({w for w in normalise(text).split() if w not in _FUNCTION_WORDS})
        return cls(" ".join(words), len(words), frozenset(w for w in words if _NUMBER.fullmatch(w)))


def comparable(a: ContentWords, b: ContentWords, min_words: int = RESTATEMENT_MIN_WORDS,
               min_share: float = RESTATEMENT_MIN_SHARE, min_numbers: float = RESTATEMENT_MIN_NUMBERS) -> bool:
    """Whether containment can tell a restatement here: both texts long enough, of like size, with like numbers."""
    small, large = sorted((a.size, b.size))
    if small < min_words or small < min_share * large:
        return False
    union = a.numbers | b.numbers
    return not union or len(a.numbers & b.numbers) >= min_numbers * len(union)


def containment(a: ContentWords, b: ContentWords) -> float:
    """Word containment in [0, 1]: rapidfuzz token_set_ratio of the content words (1 when one set holds the other)."""
    return fuzz.token_set_ratio(a.text, b.text) / 100


def restates(a: ContentWords, b: ContentWords, threshold: float) -> bool:
    """Whether one text restates the other: comparable, and containment at or above the threshold."""
    return comparable(a, b) and containment(a, b) >= threshold


class Restatements:
    """The restatement rule of one round: a candidate is compared with the example it was written from and with the
    siblings already accepted for the same parent, never with the whole store (cost: 1 + siblings comparisons)."""

    def __init__(self, threshold: float = RESTATEMENT) -> None:
        if not 0 <= threshold <= 1:
            raise ValueError(f"restatement threshold must be in [0, 1] (0: off), got {threshold}")
        self.threshold = threshold
        self._parents: dict[Hashable, ContentWords] = {}
        self._siblings: dict[Hashable, list[tuple[ContentWords, Hashable]]] = {}

    def match(self, text: str, parent_id: Hashable | None, parent_text: str | None) -> Hashable | None:
        """The id of what the text restates (its parent's id first, else a sibling's), or None."""
        if self.threshold <= 0 or parent_id is None:
            return None
        words = ContentWords.of(text)
        if parent_text is not None:
            parent = self._parents.get(parent_id)
            if parent is None:
                parent = self._parents[parent_id] = ContentWords.of(parent_text)
            if restates(words, parent, self.threshold):
                return parent_id
        for sibling, sibling_id in self._siblings.get(parent_id, []):
            if restates(words, sibling, self.threshold):
                return sibling_id
        return None

    def add(self, text: str, id: Hashable, parent_id: Hashable | None) -> None:
        """Accept a candidate: later ones written from the same parent are compared with it."""
        if parent_id is not None and self.threshold > 0:
            self._siblings.setdefault(parent_id, []).append((ContentWords.of(text), id))
