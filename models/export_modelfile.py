"""Ollama Modelfiles that reproduce the student's raw training prompt: write one, read one back, render its template.

The student learned `prompt + response + EOS` on raw text (no chat template), so the TEMPLATE is the task's prompt
with `{{ .Prompt }}` where the example's input goes, the stop lines are the task's stop strings, and decoding is
greedy without a repeat penalty, as the run evaluated it. Values holding a newline or a quote go in triple quotes,
which Ollama's parser reads verbatim.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from models.errors import ModelFileError

PROMPT = "{{ .Prompt }}"
_LITERAL_BRACES = '{{ "{{" }}'
_ACTION = re.compile(r"\{\{-?\s*(.*?)\s*-?\}\}")
_COMMAND = re.compile(r"[ \t\r\n]*(#[^\n]*|([A-Za-z]+)[ \t]+(?:([A-Za-z0-9_]+)[ \t]+)?)")


@dataclass(frozen=True)
class Modelfile:
    """The parts of a Modelfile this tool writes and reads."""

    source: str  # FROM: the GGUF, relative to the Modelfile
    template: str
    stops: tuple[str, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)  # PARAMETERs other than stop, as written


def go_template(prefix: str, suffix: str) -> str:
    """A Go template that writes `prefix`, the user's prompt, then `suffix` (literal '{{' escaped)."""
    return prefix.replace("{{", _LITERAL_BRACES) + PROMPT + suffix.replace("{{", _LITERAL_BRACES)


def render(template: str, prompt: str) -> str:
    """What Ollama feeds the model for `prompt` (the template subset go_template writes: .Prompt, .System, '{{')."""
    out, pos = [], 0
    for m in _ACTION.finditer(template):
        out.append(template[pos:m.start()])
        action = m.group(1)
        if action == ".Prompt":
            out.append(prompt)
        elif action == '"{{"':
            out.append("{{")
        elif action != ".System":
            raise ModelFileError(f"template action {{{{ {action} }}}} is beyond what this renderer reads")
        pos = m.end()
    out.append(template[pos:])
    return "".join(out)


def _quoted(value: str) -> str:
    if '"""' in value or value.startswith('"') or value.endswith('"'):
        raise ModelFileError(f"{value[:40]!r}: a Modelfile value cannot hold triple quotes or start or end with a quote")
    return f'"""{value}"""'


def write_text(mf: Modelfile, comments: list[str] | None = None) -> str:
    """The Modelfile's text: comments, FROM, TEMPLATE, PARAMETER lines (stops one per line)."""
    lines = [f"# {c}" for c in comments or []]
    lines += [f"FROM {mf.source}", f"TEMPLATE {_quoted(mf.template)}"]
    lines += [f"PARAMETER stop {_quoted(s)}" for s in mf.stops]
    lines += [f"PARAMETER {k} {v}" for k, v in mf.parameters.items()]
    return "\n".join(lines) + "\n"


def parse(text: str) -> Modelfile:
    """Read a Modelfile as Ollama does: commands, then a bare, "quoted" or \"\"\"verbatim\"\"\" value."""
    source, template, stops, params = None, "", [], {}
    pos = 0
    while pos < len(text):
        m = _COMMAND.match(text, pos)
        if m is None or m.end() == pos:
            break
        pos = m.end()
        if m.group(1).startswith("#"):
            continue
        command = m.group(2).lower()
        if command != "parameter" and m.group(3):
            pos = m.start(3)
        value, pos = _value(text, pos)
        if command == "from":
            source = value
        elif command == "template":
            template = value
        elif command == "parameter" and m.group(3) == "stop":
            stops.append(value)
        elif command == "parameter":
            params[str(m.group(3))] = value
    if source is None:
        raise ModelFileError("Modelfile has no FROM line")
    return Modelfile(source=source, template=template, stops=tuple(stops), parameters=params)


def _value(text: str, pos: int) -> tuple[str, int]:
    for quote in ('"""', '"'):
        if text.startswith(quote, pos):
            end = text.find(quote, pos + len(quote))
            if end < 0:
                raise ModelFileError(f"Modelfile: unterminated {quote} value")
            return text[pos + len(quote):end], end + len(quote)
    end = text.find("\n", pos)
    end = len(text) if end < 0 else end
    return text[pos:end].strip(), end
