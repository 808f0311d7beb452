"""Teacher prompts as template files (engine/tasks/prompts/*.j2), each declaring the inputs it takes on its first line."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from jinja2 import meta

_DECLARED = re.compile(r"\{#-?\s*inputs:\s*(?P<names>[\w,\s]*?)\s*-?#\}")
_BLANK_RUNS = re.compile(r"\n{3,}")


@dataclass(frozen=True)
class PromptTemplate:
    """A Jinja2 template and the inputs it declares; rendering with any other set of inputs is an error."""

    name: str
    inputs: frozenset[str]
    template: jinja2.Template

    def render(self, **values: Any) -> str:
        """The prompt text (runs of blank lines collapsed to one, ends stripped)."""
        given = frozenset(values)
        if given != self.inputs:
            missing, extra = sorted(self.inputs - given), sorted(given - self.inputs)
            raise TypeError(f"prompt {self.name}: missing inputs {missing}, unexpected inputs {extra}")
        return _BLANK_RUNS.sub("\n\n", self.template.render(**values)).strip()


_ENV = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                          keep_trailing_newline=False, autoescape=False)


@cache
def load_template(name: str) -> PromptTemplate:
    """The template `prompts/<name>.j2`; its declared inputs must be exactly the variables it uses."""
    source = resources.files("engine.tasks").joinpath(f"prompts/{name}.j2").read_text(encoding="utf-8")
    declared = _DECLARED.match(source)
    if declared is None:
        raise ValueError(f"prompt {name}: the first line must declare its inputs: {{#- inputs: a, b -#}}")
    inputs = frozenset(n.strip() for n in declared.group("names").split(",") if n.strip())
    used = meta.find_undeclared_variables(_ENV.parse(source))
    if used != inputs:
        raise ValueError(f"prompt {name}: declares {sorted(inputs)} but uses {sorted(used)}")
    return PromptTemplate(name=name, inputs=inputs, template=_ENV.from_string(source))


@cache
def prompts_digest() -> str:
    """16 hex digits of SHA-256 over every teacher prompt template and system message: a run's teacher prompts, which
    its config does not capture (two runs with one config but different prompts are not the same experiment)."""
    from engine.tasks.teacher_prompt import SYSTEM, VERIFY_SYSTEM

    digest = hashlib.sha256()
    folder = resources.files("engine.tasks").joinpath("prompts")
    for entry in sorted((e for e in folder.iterdir() if e.name.endswith(".j2")), key=lambda e: e.name):
        digest.update(entry.name.encode() + b"\0" + entry.read_bytes() + b"\0")
    digest.update(SYSTEM.encode() + b"\0" + VERIFY_SYSTEM.encode())
    return digest.hexdigest()[:16]
