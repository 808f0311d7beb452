"""The teacher contract: requests and replies, the Teacher protocol, reply validation and retry seeds."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from models.teacher.reply_json import loads_reply


@dataclass
class TeacherRequest:
    """One call to the teacher: chat messages, the JSON schema the reply must follow, sampling settings."""

    key: str
    messages: list[dict[str, str]]
    schema: dict[str, Any]
    max_tokens: int
    temperature: float
    top_p: float
    seed: int


@dataclass
class TeacherReply:
    """What came back for one request (after retries); `error` is set when no attempt gave schema-valid JSON."""

    key: str
    text: str
    parsed: dict[str, Any] | None
    tokens_in: int
    tokens_out: int  # generated tokens summed over all attempts (the cost of the reply)
    seconds: float  # wall time from the first attempt's start to the last attempt's end (overlaps when batched)
    error: str | None
    attempts: int = 1


OnReply = Callable[[TeacherReply], None]


@runtime_checkable
class Teacher(Protocol):
    """A backend that turns chat requests into schema-valid JSON replies."""

    def identity(self) -> str:
        """Stable string naming what determines the output (model file hash, backend, n_ctx) for cache keys."""
        ...

    def generate(self, requests: list[TeacherRequest], on_reply: OnReply | None = None) -> list[TeacherReply]:
        """Replies in request order; `on_reply` is called as each one finishes."""
        ...

    def info(self) -> dict[str, Any]:
        """What was actually set up: GPU layers offloaded, n_ctx, parallel, chat template source, model."""
        ...

    def close(self) -> None:
        """Free the model and its context."""
        ...


def closed_schema(schema: Any) -> Any:
    """The schema with every object that lists its properties closed to others (additionalProperties false unless
    the schema says otherwise): a backend without a grammar may add keys, and they must be refused, not ignored."""
    if isinstance(schema, dict):
        out = {k: closed_schema(v) for k, v in schema.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed_schema(v) for v in schema]
    return schema


def check_reply(text: str, schema: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """Parse a reply and validate it against the (closed) schema: (parsed, None) or (None, why it is unusable)."""
    import jsonschema

    if not text.strip():
        return None, "empty reply"
    try:
        parsed = loads_reply(text)
    except json.JSONDecodeError as err:
        return None, f"invalid JSON ({err.msg} at char {err.pos}; {len(text)} chars)"
    except RecursionError:
        return None, f"invalid JSON (nested too deeply; {len(text)} chars)"
    if not isinstance(parsed, dict):
        return None, f"schema: (root): a JSON {type(parsed).__name__}, not an object"
    surrogate = _lone_surrogate(parsed)
    if surrogate is not None:  # valid JSON ("\\udcfe"), but no text: it cannot even be encoded to store
        return None, f"invalid unicode: unpaired surrogate U+{ord(surrogate):04X}"
    try:
        jsonschema.validate(parsed, closed_schema(schema))
    except jsonschema.ValidationError as err:
        where = "/".join(str(p) for p in err.absolute_path) or "(root)"
        if err.validator == "additionalProperties":
            return None, f"extra keys: {where}: {err.message[:200]}"
        return None, f"schema: {where}: {err.message[:200]}"
    return parsed, None


def _lone_surrogate(value: Any) -> str | None:
    """The first unpaired UTF-16 surrogate in any string of a parsed JSON value, or None."""
    if isinstance(value, str):
        return next((ch for ch in value if "\ud800" <= ch <= "\udfff"), None)
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, list):
        for item in value:
            found = _lone_surrogate(item)
            if found is not None:
                return found
    return None


# What an unusable reply's error says → the counted reason (augment's failed_reasons).
_FAILURES = (("cut at max_tokens", "cut_off"), ("empty reply", "empty_reply"), ("invalid JSON", "invalid_json"),
             ("invalid unicode", "invalid_unicode"), ("extra keys", "extra_keys"), ("schema", "schema"),
             ("prompt", "prompt"))


def failure_reason(error: str | None) -> str:
    """The counted reason of a teacher call that gave no usable reply (its stored error, classified)."""
    text = error or ""
    for prefix, reason in _FAILURES:
        if text.startswith(prefix):
            return reason
    return "backend_error"


def attempt_seed(seed: int, attempt: int) -> int:
    """Sampler seed of attempt `attempt` (0: the request's seed): reproducible, different per retry, never
    0xFFFFFFFF (llama.cpp's "pick a random seed")."""
    if attempt == 0:
        return seed % 0xFFFFFFFF
    digest = hashlib.sha256(f"{seed}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def file_sha256(path: Path, cache_file: Path | None = None) -> str:
    """sha256 of a (large) file, computed once and remembered by path, size and mtime in a small JSON file."""
    path = Path(path).resolve()
    stat = path.stat()
    key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}"
    if cache_file is None:
        from models.paths import model_cache

        cache_file = model_cache() / "sha256_cache.json"
    try:
        known = json.loads(cache_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key in known:
        return known[key]
    from models.catalog import sha256_file

    known[key] = sha256_file(path)
    tmp = cache_file.with_suffix(f".{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(known, indent=0), encoding="utf-8")
        tmp.replace(cache_file)  # atomic: concurrent writers never leave a half-written cache
    except OSError:
        pass  # a read-only cache folder only costs a re-hash next time
    return known[key]
