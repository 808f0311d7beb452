"""Helpers shared by the task kinds: template filling, text normalisation, field-value coercion."""

from __future__ import annotations

import functools
import math
import re
import unicodedata
from typing import Any

from engine.config.schema import DataConfig
from models.errors import ConfigError

_SPACES = re.compile(r"\s+")
_TRAILING_PUNCT = ".!?,;:…"


def fill_template(template: str, **values: str) -> str:
    """Replace `{name}` placeholders by plain substitution (user text may hold braces; str.format would choke)."""
    out = template
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    return out


def normalise_answer(text: str) -> str:
    """Casefolded, stripped, inner whitespace collapsed, trailing punctuation removed (free-text exact match)."""
    text = _SPACES.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return text.rstrip(_TRAILING_PUNCT).rstrip()


def raw_key(value: Any) -> str:
    """A field value as the string a label_map or label set is matched against (1.0 → '1', True → 'true')."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return str(int(value))
    return str(value).strip()


_PLACEHOLDER = re.compile(r"\{(\w+)\}")
RESERVED_FIELDS = ("input", "choices")


def named_fields(template: str) -> list[str]:
    """Row fields a prompt template names directly ('{Body} {Question}'), in order; {input} and {choices} excluded."""
    seen: list[str] = []
    for m in _PLACEHOLDER.finditer(template):
        if m.group(1) not in RESERVED_FIELDS and m.group(1) not in seen:
            seen.append(m.group(1))
    return seen


@functools.lru_cache(maxsize=64)  # every prompt rendered parses the template: once per template is enough
def split_template(template: str) -> tuple[str | None, str]:
    """(input template, prompt template): a template naming row fields is cut after its last named field; the part
    before becomes the example's input text, the rest follows '{input}' in the prompt. Without named fields:
    (None, template)."""
    fields = named_fields(template)
    if not fields:
        return None, template
    if "{input}" in template:
        raise ConfigError("task.prompt: use either {input} (with data.input_field) or row fields such as {Body}, not both")
    end = max(m.end() for m in _PLACEHOLDER.finditer(template) if m.group(1) in fields)
    return template[:end], "{input}" + template[end:]


class RowProblem(ValueError):
    """A row cannot become an example; the message is the part after 'file:line N: '."""


def target_name(fields: DataConfig | None) -> str:
    """The configured target field's name, for messages."""
    return fields.target_field if fields is not None else "target"
