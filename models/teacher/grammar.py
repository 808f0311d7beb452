"""The GBNF every teacher reply is generated under: llama-cpp-python's JSON-schema grammar with strict strings."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

# llama-cpp-python's converter lets raw control characters into strings (llama.cpp's own excludes them), and
# json.loads rejects such strings: models do write raw newlines there, so every such reply would be lost.
_LOOSE_CHAR = r'char ::= [^"\\] '
_STRICT_CHAR = r'char ::= [^"\\\x7F\x00-\x1F] '
# A teacher writing LaTeX in a JSON string writes \tan, \frac, \[ with one backslash. JSON's grammar would force
# another character after it (\ntriangle for \triangle, \nabla for \tan, seen in a MATH sweep), so any printable
# ASCII character may follow a backslash and the reply is read by reply_json.loads_reply, which keeps the backslash.
_ESCAPES = '["\\\\/bfnrt]'
_ESCAPES_ALLOWED = "[ -~]"  # a space too: LaTeX's control space "\\ " is common in MATH rows
GRAMMAR = "latex-escapes"  # in the cache identity: replies written under another grammar are not these


def schema_grammar(schema: dict[str, Any]) -> str:
    """GBNF for a JSON schema: llama-cpp-python's converter, no raw control characters, any printable after a backslash
    (built once per schema: every request of a round carries the same one)."""
    return _grammar_of(json.dumps(schema, sort_keys=True))


@lru_cache(maxsize=64)
def _grammar_of(schema_json: str) -> str:
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    grammar = json_schema_to_gbnf(schema_json).replace(_LOOSE_CHAR, _STRICT_CHAR)
    if "char ::=" not in grammar:
        return grammar  # no free text in the reply (enums, numbers only, as a blind verdict): no escapes to change
    if _ESCAPES not in grammar:
        raise RuntimeError("llama-cpp-python's JSON grammar changed: its string escapes could not be replaced")
    return grammar.replace(_ESCAPES, _ESCAPES_ALLOWED)
