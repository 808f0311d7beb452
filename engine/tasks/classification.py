"""Classification into a fixed label set, scored by each label's log-likelihood (or the label the output starts with)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from engine.config.schema import DataConfig, TaskConfig
from engine.tasks.base import Example, Task
from engine.tasks.common import RowProblem, raw_key
from engine.tasks.prompt_templates import load_template
from engine.tasks.teacher_prompt import (
    NO_DIVERSITY,
    NOT_VALID,
    Diversity,
    bounded_string,
    clip,
    examples_schema,
    object_schema,
    pick_schema,
    pick_verdict,
    student_said,
    teacher_chat,
    verify_chat,
)
from models.errors import ConfigError

DEFAULT_PROMPT = "Input: {input}\nLabel:"


def check_labels(labels: list[str] | None, kind: str) -> list[str]:
    """Labels that are non-empty, single-line and distinct ignoring case; ConfigError otherwise."""
    if not labels:
        raise ConfigError(f"task.labels: required for {kind} (e.g. labels = [\"negative\", \"positive\"])")
    seen: dict[str, str] = {}
    for label in labels:
        if not label.strip() or label != label.strip() or "\n" in label:
            raise ConfigError(f"task.labels: {label!r} must be non-empty text without surrounding spaces or newlines")
        if label.casefold() in seen:
            raise ConfigError(f"task.labels: {label!r} and {seen[label.casefold()]!r} differ only in case")
        seen[label.casefold()] = label
    return list(labels)


class ClassificationTask(Task):
    """Predicted label == gold label; the student is scored on ' <label>' continuations."""

    kind = "classification"
    default_prompt = DEFAULT_PROMPT
    verifies = True
    text_chars = 300
    reason_chars = 160

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        self.labels = check_labels(cfg.labels, self.kind)
        self._by_fold = {label.casefold(): label for label in self.labels}
        # longest first, so a label that is a prefix of another ('pos' / 'positive') cannot shadow it
        alternatives = "|".join(re.escape(label) for label in sorted(self.labels, key=len, reverse=True))
        self._leading = re.compile(rf"^[\s\"'`*(\[]*({alternatives})(?!\w)", re.IGNORECASE)


    def render_response(self, ex: Example) -> str:
        """' <label>'."""
        return " " + ex.answer

    def label_options(self, ex: Example) -> list[str] | None:
        """One continuation per label, in label order."""
        return [" " + label for label in self.labels]

    @property
    def stop(self) -> list[str]:
        """A label is one line."""
        return ["\n"]

    def extract(self, output: str, ex: Example) -> str | None:
        """The label the output starts with (case-insensitive), in its configured spelling."""
        m = self._leading.match(output)
        return self._by_fold[m.group(1).casefold()] if m else None

    def is_correct(self, predicted: str | None, ex: Example) -> bool:
        """Same label, ignoring case."""
        return predicted is not None and predicted.casefold() == ex.answer.casefold()

    def canonical_label(self, value: Any) -> str | None:
        """The configured label a raw value names (case-insensitive), or None."""
        return self._by_fold.get(raw_key(value).casefold())

    def example_from_fields(self, text: str, target: Any, choices: list[str] | None, fields: DataConfig | None = None) -> Example:
        """An Example from a row's text and (already label-mapped) target."""
        label = self.canonical_label(target)
        if label is None:
            hint = ""
            if fields is not None and fields.label_map:
                hint = f" (data.label_map maps {', '.join(sorted(fields.label_map))})"
            raise RowProblem(f"label {raw_key(target)!r} not in [{', '.join(self.labels)}]{hint}")
        return Example(input=text, target=" " + label, answer=label)

    # teacher ------------------------------------------------------------------------------------------
    def teacher_messages(self, ex: Example, student_output: str | None, k: int, *, is_miss: bool = True,
                         grounding: Sequence[Example] = (), diversity: Diversity = NO_DIVERSITY) -> list[dict[str, str]]:
        """Ask for k new examples of the same label that keep what made this one hard."""
        labels = ", ".join(self.labels)
        return teacher_chat(load_template("classification").render(
            task=self.cfg.description or f"Classify each text as one of: {labels}.", labels=self.labels, k=k,
            text=clip(ex.input, 3 * self.text_chars), label=ex.answer, is_miss=is_miss,
            student_answer=student_said(student_output, self.extract(student_output or "", ex)),
            grounding=[clip(g.input, self.text_chars) for g in grounding], **diversity.inputs()))

    def teacher_schema(self, k: int) -> dict[str, Any]:
        """{'what_made_it_hard': str, 'examples': [{'text', 'label': enum}] × k}."""
        item = object_schema({"text": bounded_string(self.text_chars, 5), "label": {"type": "string", "enum": self.labels}})
        return examples_schema(item, k, extra={"what_made_it_hard": bounded_string(self.reason_chars)})

    def parse_teacher(self, reply: dict[str, Any], parent: Example) -> list[Example]:
        """Examples as the teacher labelled them; the requested label and the teacher's diagnosis go to meta."""
        hard = str(reply.get("what_made_it_hard", "")).strip()
        out = []
        for item in reply.get("examples", []):
            raw = str(item.get("label", "")).strip()
            label = self.canonical_label(raw) or raw
            out.append(Example(input=str(item.get("text", "")).strip(), target=" " + label, answer=label,
                               meta={"requested_label": parent.answer, "what_made_it_hard": hard}))
        return out

    def verify_messages(self, ex: Example, shots: Sequence[Example] = ()) -> list[dict[str, str]]:
        """The text alone, the label set, real labelled examples (shots) and the way out for text that is not an input."""
        labels = ", ".join(self.labels)
        return verify_chat(load_template("verify_classification").render(
            task=self.cfg.description or f"Classify each text as one of: {labels}.", labels=self.labels,
            noun=self.input_noun, text=clip(ex.input, 3 * self.text_chars), not_valid=NOT_VALID,
            shots=[(s.answer, clip(s.input, self.text_chars)) for s in shots]))

    def verify_schema(self) -> dict[str, Any]:
        """{'label': one of the labels or 'not a valid input'}."""
        return pick_schema("label", self.labels)

    def verify_verdict(self, reply: dict[str, Any], ex: Example) -> str | None:
        """'not_a_task', 'label_disagrees' or None."""
        return pick_verdict(reply, "label", ex.answer)

    def reject_reason(self, ex: Example) -> str | None:
        """'empty_input' or 'label_not_in_set'."""
        if not ex.input.strip():
            return "empty_input"
        if self.canonical_label(ex.answer) is None:
            return "label_not_in_set"
        return None
