"""Pieces shared by every task's teacher prompt: the system message, the miss summary, bounded JSON schemas."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SYSTEM = (
    "You write new training examples for a small student model that is learning a task. "
    "You are shown one example of the task, usually one the student got wrong. Write new, original examples "
    "that teach what the student is missing. Never copy the shown example or change only a word or two of it. "
    "Reply with JSON only, following the given format."
)

# The blind verifier's answer for a candidate that is not an input of the task at all.
NOT_VALID = "not a valid input"

VERIFY_SYSTEM = (
    "You check examples for a data set. You are shown one example without its answer; answer it as an expert "
    "would. Reply with JSON only, following the given format."
)

# How much of the student's wrong output the teacher sees (it can be a long rambling generation).
STUDENT_OUTPUT_CHARS = 400


def clip(text: str, limit: int) -> str:
    """Text cut to `limit` characters, marked with an ellipsis when cut."""
    text = text.strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def student_said(output: str | None, extracted: str | None) -> str:
    """What the student answered (its raw output, and what was read from it when that differs); '' when not shown."""
    if output is None:
        return ""
    if not output.strip():
        return "The student gave no answer."
    shown = clip(output, STUDENT_OUTPUT_CHARS)
    if extracted is None:
        return f"The student answered:\n{shown}\n(no answer could be read from it)"
    if shown == extracted:
        return f"The student answered: {extracted}"
    return f"The student answered:\n{shown}\n(read as {extracted})"


# English function words and words every task's text is full of: never worth forbidding (augment.taboo_words).
STOPWORDS = frozenset(
    "a about above after again against all also am an and any are as at be because been before being below between "
    "both but by can could did do does doing down during each either else even ever every few for from further get "
    "gets got had has have having he her here hers herself him himself his how however i if in into is it its itself "
    "just least less like many may me might more most much must my myself neither no nor not now of off often on once "
    "one only or other others our ours ourselves out over own per quite rather really same she should since so some "
    "still such than that the their theirs them themselves then there these they this those though through thus to "
    "too two under until up upon us very was way we well were what whatever when where whether which while who whom "
    "whose why will with within without would yet you your yours yourself yourselves".split())
_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")
TABOO_MIN_CHARS = 3  # shorter words are left out of a taboo list


def content_words(text: str, limit: int) -> list[str]:
    """Up to `limit` distinct content words of a text, in text order: stopwords, words shorter than TABOO_MIN_CHARS and
    contractions ("don't") left out, a possessive cut to its word ("Spielberg's" → "Spielberg"); past the limit the
    longest are kept (names and nouns before short verbs)."""
    seen: dict[str, tuple[int, str]] = {}
    for m in _WORD.finditer(text):
        word = m.group(0).replace("’", "'")
        if "'" in word:
            base, tail = word.split("'", 1)
            if tail.casefold() != "s":
                continue
            word = base
        folded = word.casefold()
        if len(word) < TABOO_MIN_CHARS or folded in STOPWORDS or folded in seen:
            continue
        seen[folded] = (len(seen), word)
    ranked = sorted(seen.values(), key=lambda item: (-len(item[1]), item[0]))[: max(limit, 0)]
    return [word for _, word in sorted(ranked)]


@dataclass(frozen=True)
class Diversity:
    """What a teacher prompt adds against copies of its seed (the [augment] levers): words it must not use, examples
    already written from the same seed, and whether one call's examples must differ from each other. Empty (the
    default): the prompt is today's, byte for byte, so the teacher cache of earlier runs still answers."""

    taboo: tuple[str, ...] = ()
    earlier: tuple[str, ...] = ()
    differ: bool = False

    def inputs(self) -> dict[str, Any]:
        """The template inputs every teacher prompt declares for the levers."""
        return {"taboo": list(self.taboo), "earlier": list(self.earlier), "differ": self.differ}


NO_DIVERSITY = Diversity()  # the default of every task's teacher_messages: no lever, today's prompt


def distinct_examples(schema: dict[str, Any]) -> dict[str, Any]:
    """The teacher schema with its examples required to be distinct (JSON-schema uniqueItems: the grammar cannot
    enforce it, the reply check does, so a reply repeating an item is retried as any schema-invalid reply is)."""
    examples = dict(schema["properties"]["examples"], uniqueItems=True)
    return {**schema, "properties": {**schema["properties"], "examples": examples}}


def bounded_string(max_length: int, min_length: int = 1) -> dict[str, Any]:
    """A JSON-schema string with both length bounds (a reply cut at max_tokens is invalid JSON)."""
    return {"type": "string", "minLength": min_length, "maxLength": max_length}


def examples_schema(item: dict[str, Any], k: int, extra: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """{'examples': [item × k]} with exactly k items; `extra` properties come first (written before the examples)."""
    properties: dict[str, Any] = dict(extra or {})
    properties["examples"] = {"type": "array", "items": item, "minItems": k, "maxItems": k}
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def object_schema(properties: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """A closed JSON object whose properties are all required, in this order."""
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def max_reply_chars(schema: dict[str, Any]) -> int:
    """Upper bound on the characters of a reply that follows `schema` (for sizing teacher.max_tokens)."""
    kind = schema.get("type")
    if "enum" in schema:
        return max(len(json.dumps(v)) for v in schema["enum"])
    if kind == "string":
        # a JSON escape can double a character; count 2 per character as the worst ordinary case
        return 2 + 2 * int(schema.get("maxLength", 10_000))
    if kind in ("number", "integer"):
        return 24
    if kind == "array":
        n = int(schema.get("maxItems", 100))
        return 2 + n * (max_reply_chars(schema["items"]) + 2)
    if kind == "object":
        return 2 + sum(len(name) + 6 + max_reply_chars(sub) for name, sub in schema["properties"].items())
    return 64


def pick_schema(key: str, options: Sequence[str]) -> dict[str, Any]:
    """The blind verifier's reply: {key: one of the options or 'not a valid input'}."""
    return object_schema({key: {"type": "string", "enum": [*options, NOT_VALID]}})


def pick_verdict(reply: dict[str, Any], key: str, expected: str) -> str | None:
    """'not_a_task' when the blind pick says the text is no input of the task, 'label_disagrees' when it picks
    another answer than the candidate's, else None."""
    picked = str(reply.get(key, ""))
    if picked == NOT_VALID:
        return "not_a_task"
    return None if picked.casefold() == expected.casefold() else "label_disagrees"


def verify_chat(request: str) -> list[dict[str, str]]:
    """The verifier's system message and the request."""
    return [{"role": "system", "content": VERIFY_SYSTEM}, {"role": "user", "content": request}]


def teacher_chat(request: str, worked: tuple[str, str] | None = None) -> list[dict[str, str]]:
    """The system message, an optional worked (request, reply) exchange, then the request."""
    messages = [{"role": "system", "content": SYSTEM}]
    if worked is not None:
        messages += [{"role": "user", "content": worked[0]}, {"role": "assistant", "content": worked[1]}]
    return messages + [{"role": "user", "content": request}]
