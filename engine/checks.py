"""Checks on teacher-written candidates that need no model: text about an example (meta_text), length, requested
label, control characters left by JSON escapes, and the per-label cap that keeps the seed's label mix."""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine.tasks.base import Example, Task

# Nouns an input of a task is usually called; those the task's prompt or description use become meta patterns.
INPUT_NOUNS = ("review", "text", "sentence", "passage", "snippet", "tweet", "comment", "post", "message", "email",
               "ticket", "utterance", "question", "problem", "statement", "request", "query", "article", "document",
               "story", "headline", "description", "example", "input", "context", "excerpt", "quote")
# Verbs that make "<the|this> <noun>" a sentence about the example rather than part of one.
_ABOUT_VERBS = ("is", "was", "expresses", "expressed", "describes", "described", "shows", "conveys", "indicates",
                "suggests", "asks", "talks", "discusses", "mentions", "praises", "criticizes", "criticises", "highlights",
                "seems", "appears", "contains", "focuses", "reads", "sounds", "presents", "states", "requires",
                "involves", "deals", "reflects", "gives", "has", "uses", "features", "provides", "compares", "explains")
_AUTHORS = ("reviewer", "author", "writer", "speaker", "narrator", "critic", "user", "customer", "poster")
_AUTHOR_VERBS = ("is", "was", "expresses", "expressed", "feels", "felt", "thinks", "thought", "says", "said", "describes",
                 "praises", "criticizes", "criticises", "loved", "loves", "likes", "liked", "hated", "hates", "enjoyed",
                 "enjoys", "found", "finds", "seems", "appears", "highlights", "mentions", "notes", "believes", "considers",
                 "gives", "gave", "calls", "called", "was", "recommends", "points", "argues", "wants", "asks")
_GENERIC = (
    rf"\b(?:the|this|that)\s+(?:{'|'.join(_AUTHORS)})\s+(?:\w+ly\s+)?(?:{'|'.join(_AUTHOR_VERBS)})\b",
    r"\bindicating\s+(?:a|an|that)\b",
)
_ANSWER_NOUN = re.compile(r"(\w+)\s*:\s*$")
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f]")
_JSON_CONTROL = {"\t": "\\t", "\f": "\\f", "\b": "\\b", "\r": "\\r"}
_MATH_NEWLINE = re.compile(r"\n(?=[A-Za-z])")


class MetaText:
    """Patterns that mark a candidate as talking about an example of the task instead of being one."""

    def __init__(self, task: Task, extra: Sequence[str] = ()) -> None:
        words = " ".join([task.template, task.cfg.description or ""]).casefold()
        nouns = {n for n in INPUT_NOUNS if re.search(rf"\b{n}s?\b", words)} | {task.input_noun}
        patterns = list(_GENERIC)
        if nouns:
            patterns.append(rf"\b(?:the|this|that)\s+(?:{'|'.join(sorted(map(re.escape, nouns)))})s?\s+"
                            rf"(?:\w+ly\s+)?(?:{'|'.join(_ABOUT_VERBS)})\b")
        answer = _ANSWER_NOUN.search(task.template)
        labels = [label for label in getattr(task, "labels", []) if len(label) > 1]
        if labels and task.kind == "classification":
            alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
            patterns.append(rf"\b(?:{alternatives})\s+(?:sentiment|tone|label|review|opinion|overall)\b")
            patterns.append(rf"\b(?:overall|overwhelmingly|clearly|mostly|generally)\s+(?:{alternatives})\b")
            patterns.append(rf"\b(?:labell?ed|classified|categori[sz]ed|tagged)\s+as\s+(?:an?\s+)?(?:{alternatives})\b")
        if answer and answer.group(1).casefold() not in ("answer", "output"):
            noun = re.escape(answer.group(1))  # e.g. "Sentiment:" → "the sentiment is", "sentiment of this"
            patterns.append(rf"\b(?:the|its|overall)\s+{noun}\s+(?:is|was|here)\b|\b{noun}\s+of\s+(?:this|the)\b")
        self.nouns = sorted(nouns)
        self.patterns = [re.compile(p, re.IGNORECASE) for p in [*patterns, *extra]]

    def match(self, text: str) -> str | None:
        """The first piece of the text a pattern finds, or None."""
        for pattern in self.patterns:
            m = pattern.search(text)
            if m:
                return m.group(0)
        return None


def repair_escapes(text: str) -> tuple[str, int]:
    """Undo JSON escapes that ate a LaTeX backslash: a tab, form feed, backspace or carriage return goes back to the
    two characters the teacher wrote (\\t of \\tan, \\f of \\frac, ...), and a line break inside $...$ math followed by
    a letter back to \\n (\\neq, \\nu). Returns the text and how many were repaired."""
    repaired = 0
    out = []
    for ch in text:
        if ch in _JSON_CONTROL:
            out.append(_JSON_CONTROL[ch])
            repaired += 1
        else:
            out.append(ch)
    text = "".join(out)
    if "$" in text and "\n" in text:
        pieces, in_math, i = [], False, 0
        while i < len(text):
            ch = text[i]
            if ch == "$":
                in_math = not in_math
            if ch == "\n" and in_math and i + 1 < len(text) and text[i + 1].isalpha():
                pieces.append("\\n")
                repaired += 1
            else:
                pieces.append(ch)
            i += 1
        text = "".join(pieces)
    return text, repaired


def has_control_chars(text: str) -> bool:
    """Whether any control character other than a line break is left."""
    return _CONTROL.search(text) is not None


@dataclass(frozen=True)
class LengthRange:
    """Candidates must be between the seeds' shortest / factor and longest × factor, in words."""

    low: float
    high: float

    @classmethod
    def of_seeds(cls, seeds: Iterable[str], factor: float) -> LengthRange | None:
        """The allowed range for these seed inputs (None when the check is off or there are no seeds)."""
        counts = [len(text.split()) for text in seeds]
        if not counts or factor <= 0:
            return None
        return cls(low=min(counts) / factor, high=max(counts) * factor)

    def allows(self, text: str) -> bool:
        """Whether the text's word count lies inside the range."""
        return self.low <= len(text.split()) <= self.high


def label_mismatch(task: Task, ex: Example) -> bool:
    """A classification candidate labelled otherwise than the example it was written for."""
    requested = ex.meta.get("requested_label")
    return task.kind == "classification" and requested is not None and requested.casefold() != ex.answer.casefold()


def balance_cap(current: Counter[str], seed_share: dict[str, float], candidates: list[tuple[int, str]],
                tolerance: float, seed: int) -> set[int]:
    """Ids of candidates to keep so that no label's share of the training set rises above its seed share + tolerance.

    Labels take turns (in a seeded order, candidates in their given order), so one label's early candidates cannot
    use up the room before the others are considered."""
    queues: dict[str, list[int]] = {}
    for cid, label in candidates:
        queues.setdefault(label, []).append(cid)
    order = sorted(queues)
    random.Random(seed).shuffle(order)
    counts = Counter(current)
    total = sum(counts.values())
    kept: set[int] = set()
    progressed = True
    while progressed:
        progressed = False
        for label in order:
            if not queues[label]:
                continue
            if (counts[label] + 1) / (total + 1) <= seed_share.get(label, 0.0) + tolerance:
                kept.add(queues[label].pop(0))
                counts[label] += 1
                total += 1
                progressed = True
    return kept
