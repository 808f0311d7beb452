"""The new-run form, generated from RunConfig's pydantic fields (the CLI's schema), validated as you type."""

from __future__ import annotations

import json
import tomllib
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Button, Collapsible, Input, Label, Select, Static

from engine.config.schema import RunConfig, resolve
from models.errors import L2LError

EXPANDED = ("run", "task", "data", "student", "teacher", "loop")


@dataclass(frozen=True)
class FieldSpec:
    """One leaf field of the config: where it lives, what it holds, its default and help."""

    key: str  # dotted path, e.g. "train.epochs"
    kind: str  # choice / bool / int / float / str / path / list / dict
    optional: bool
    choices: tuple[str, ...]
    default: Any
    description: str
    picker: bool  # offer a file picker (data files, model files)

    @property
    def section(self) -> str:
        """The section the field belongs to ('run' for top-level fields)."""
        return self.key.split(".")[0] if "." in self.key else "run"

    @property
    def name(self) -> str:
        """The field's own name."""
        return self.key.rsplit(".", 1)[-1]

    @property
    def widget_id(self) -> str:
        """DOM id of the field's input widget."""
        return "f-" + self.key.replace(".", "-")


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(the annotation without None, whether None is allowed)."""
    if get_origin(annotation) in (Union, types.UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        return (args[0] if len(args) == 1 else annotation), len(args) < len(get_args(annotation))
    return annotation, False


def _kind(annotation: Any) -> tuple[str, tuple[str, ...]]:
    origin = get_origin(annotation)
    if origin is Literal:
        return "choice", tuple(str(a) for a in get_args(annotation))
    if annotation is bool:
        return "bool", ()
    if annotation is int:
        return "int", ()
    if annotation is float:
        return "float", ()
    if isinstance(annotation, type) and issubclass(annotation, Path):
        return "path", ()
    if origin is list:
        return "list", ()
    if origin is dict:
        return "dict", ()
    return "str", ()


def field_specs(model: type[BaseModel] = RunConfig, prefix: str = "") -> list[FieldSpec]:
    """Every leaf field of the model, sections flattened to dotted keys, in declaration order."""
    specs: list[FieldSpec] = []
    for name, info in model.model_fields.items():
        annotation, optional = _unwrap(info.annotation)
        key = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            specs.extend(field_specs(annotation, f"{key}."))
            continue
        kind, choices = _kind(annotation)
        description = info.description or ""
        picker = kind == "path" or (kind == "str" and ".gguf" in description)
        specs.append(FieldSpec(key, kind, optional, choices, info.get_default(call_default_factory=True),
                               description, picker))
    return specs


def sections(model: type[BaseModel] = RunConfig) -> dict[str, str]:
    """Section name → its one-line docstring ('run' holds the top-level fields)."""
    out = {"run": (model.__doc__ or "").strip()}
    for name, info in model.model_fields.items():
        annotation, _ = _unwrap(info.annotation)
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            out[name] = (annotation.__doc__ or "").strip()
    return out


def to_text(spec: FieldSpec, value: Any) -> str:
    """A config value as the text the form shows."""
    if value is None:
        return ""
    if spec.kind == "list":
        return ", ".join(str(v) for v in value)
    if spec.kind == "dict":
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if spec.kind == "str" and not spec.picker:
        return str(value).replace("\n", "\\n")  # one-line inputs: a newline is shown (and typed) as \n
    return str(value)


def from_text(spec: FieldSpec, text: str) -> Any:
    """The form's text as a config value (scalars stay strings: pydantic converts them and names the error)."""
    if spec.kind == "str" and not spec.picker:
        return text.replace("\\n", "\n")
    text = text.strip()
    if spec.kind == "list":
        if text.startswith("["):
            try:
                return json.loads(text)
            except ValueError:
                return tomllib.loads(f"v = {text}")["v"] if _toml_ok(text) else text
        return [part.strip() for part in text.split(",") if part.strip()]
    if spec.kind == "dict":
        if text.startswith("{"):
            try:
                return json.loads(text)
            except ValueError:
                return tomllib.loads(f"v = {text}")["v"] if _toml_ok(text) else text
        pairs = [part.split("=", 1) if "=" in part else part.split(":", 1) for part in text.split(",") if part.strip()]
        if any(len(p) != 2 for p in pairs):
            return text  # pydantic reports it as not a mapping
        return {k.strip(): v.strip() for k, v in pairs}
    return text


def _toml_ok(text: str) -> bool:
    try:
        tomllib.loads(f"v = {text}")
    except tomllib.TOMLDecodeError:
        return False
    return True


def error_key(loc: tuple[Any, ...], keys: set[str]) -> str | None:
    """The form field a pydantic error location points at (longest matching prefix)."""
    parts = [str(p) for p in loc]
    for n in range(len(parts), 0, -1):
        key = ".".join(parts[:n])
        if key in keys:
            return key
    return None


def _set(doc: dict[str, Any], key: str, value: Any) -> None:
    node = doc
    *path, last = key.split(".")
    for part in path:
        node = node.setdefault(part, {})
    node[last] = value


def _get(doc: dict[str, Any], key: str, default: Any) -> Any:
    node: Any = doc
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


class ConfigForm(VerticalScroll):
    """One row per config field (label, input, help) grouped by section; errors appear under their field."""

    class Checked(Message):
        """The form was validated: a RunConfig (None when invalid) and the errors by field key ('' = whole form)."""

        def __init__(self, form: ConfigForm, cfg: RunConfig | None, errors: dict[str, str]) -> None:
            super().__init__()
            self.form, self.cfg, self.errors = form, cfg, errors

    class PickRequested(Message):
        """The user wants a file picker for a field."""

        def __init__(self, spec: FieldSpec, current: str) -> None:
            super().__init__()
            self.spec, self.current = spec, current

    def __init__(self, initial: dict[str, Any] | None = None, base_dir: Path | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs = field_specs()
        self.by_key = {s.key: s for s in self.specs}
        self.initial = initial
        self.base_dir = base_dir or Path.cwd()
        self.cfg: RunConfig | None = None
        self.errors: dict[str, str] = {}

    # building -----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        """A collapsible group per section."""
        yield Static("", id="form-error", classes="field-error")
        docs = sections()
        for section, doc in docs.items():
            specs = [s for s in self.specs if s.section == section]
            with Collapsible(title=f"{section} — {doc}", collapsed=section not in EXPANDED, id=f"sec-{section}"):
                for spec in specs:
                    yield from self._row(spec)

    def _initial_text(self, spec: FieldSpec) -> str:
        value = _get(self.initial, spec.key, spec.default) if self.initial is not None else spec.default
        return to_text(spec, value)

    def _row(self, spec: FieldSpec) -> ComposeResult:
        text = self._initial_text(spec)
        widget: Widget
        if spec.kind in ("bool", "choice"):
            choices = ("True", "False") if spec.kind == "bool" else spec.choices
            widget = Select([(c.lower() if spec.kind == "bool" else c, c) for c in choices],
                            value=text if text in choices else Select.NULL, allow_blank=spec.optional,
                            prompt="(unset)", id=spec.widget_id, compact=True)
        else:
            placeholder = {"list": "(unset) e.g. a, b, c", "dict": "(unset) e.g. 0=negative, 1=positive"}.get(spec.kind, "(unset)" if spec.optional else "")
            kind: Literal["integer", "number", "text"] = "text"
            if not spec.optional:
                kind = "integer" if spec.kind == "int" else "number" if spec.kind == "float" else "text"
            widget = Input(value=text, placeholder=placeholder, id=spec.widget_id, compact=True, type=kind)
        with Vertical(classes="field"):
            with Horizontal(classes="field-row"):
                yield Label(spec.name, classes="field-name")
                yield widget
                if spec.picker:
                    yield Button("…", id=f"pick-{spec.widget_id}", classes="pick", tooltip="choose a file")
                else:
                    yield Static("", classes="pick")
                yield Static(spec.description, classes="field-help")
            yield Static("", id=f"err-{spec.widget_id}", classes="field-error")

    def on_mount(self) -> None:
        """Validate the initial values."""
        self.check()

    # reading ------------------------------------------------------------------------------------
    def text_of(self, spec: FieldSpec) -> str:
        """What the field holds now, as text."""
        widget = self.query_one(f"#{spec.widget_id}")
        if isinstance(widget, Select):
            return "" if widget.value is Select.NULL else str(widget.value)
        assert isinstance(widget, Input)
        return widget.value

    def set_text(self, key: str, text: str) -> None:
        """Put a value into a field (e.g. from a file picker) and revalidate."""
        spec = self.by_key[key]
        widget = self.query_one(f"#{spec.widget_id}")
        if isinstance(widget, Input):
            widget.value = text
        elif isinstance(widget, Select):
            widget.value = text if text else Select.NULL
        self.check()

    def document(self) -> dict[str, Any]:
        """The config mapping: only fields that differ from their default (so presets fill the rest)."""
        doc: dict[str, Any] = {}
        for spec in self.specs:
            text = self.text_of(spec)
            if text.strip() == to_text(spec, spec.default).strip():
                continue
            if not text.strip():
                _set(doc, spec.key, None)
                continue
            _set(doc, spec.key, text == "True" if spec.kind == "bool" else from_text(spec, text))
        return doc

    # validation ---------------------------------------------------------------------------------
    def check(self) -> RunConfig | None:
        """Validate the form with pydantic, show errors at their fields, post Checked; the config or None."""
        doc = self.document()
        errors: dict[str, str] = {}
        cfg: RunConfig | None = None
        try:
            RunConfig.model_validate(doc)
            cfg = resolve(doc, "form", self.base_dir)
        except ValidationError as err:
            keys = set(self.by_key)
            for item in err.errors():
                key = error_key(item["loc"], keys) or ""
                msg = "unknown key" if item["type"] == "extra_forbidden" else item["msg"]
                errors[key] = f"{errors[key]}; {msg}" if key in errors else msg
        except (L2LError, ValueError) as err:
            errors[""] = str(err)
        self.cfg, self.errors = cfg, errors
        self._show_errors()
        self.post_message(self.Checked(self, cfg, errors))
        return cfg

    def _show_errors(self) -> None:
        for spec in self.specs:
            message = self.errors.get(spec.key, "")
            label = self.query_one(f"#err-{spec.widget_id}", Static)
            label.update(f"↑ {message}" if message else "")
            label.display = bool(message)
            self.query_one(f"#{spec.widget_id}").set_class(bool(message), "-invalid")
            if message:
                self.query_one(f"#sec-{spec.section}", Collapsible).collapsed = False
        top = self.query_one("#form-error", Static)
        top.update(self.errors.get("", ""))
        top.display = "" in self.errors

    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Message) -> None:
        event.stop()
        self.check()

    @on(Button.Pressed, ".pick")
    def _pick(self, event: Button.Pressed) -> None:
        event.stop()
        widget_id = (event.button.id or "").removeprefix("pick-")
        spec = next(s for s in self.specs if s.widget_id == widget_id)
        self.post_message(self.PickRequested(spec, self.text_of(spec)))
