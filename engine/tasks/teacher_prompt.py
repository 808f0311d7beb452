"""Pieces shared by every task's teacher prompt: the system message, the miss summary, bounded JSON schemas."""

from __future__ import annotations

import json
from collections.abc import Sequence
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
