"""Free-text answers scored by normalised exact match or by a regex the answer must fully match."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from engine.config.schema import DataConfig, TaskConfig
from engine.tasks.base import Example, Task
from engine.tasks.common import RowProblem, normalise_answer, target_name
from engine.tasks.prompt_templates import load_template
from engine.tasks.teacher_prompt import (
    NO_DIVERSITY,
    Diversity,
    bounded_string,
    clip,
    examples_schema,
    object_schema,
    student_said,
    teacher_chat,
)
from models.errors import ConfigError

DEFAULT_PROMPT = "Input: {input}\nOutput:"


def first_line(output: str) -> str:
    """The output up to its first line break, stripped (the student's answer ends there)."""
    return output.strip().split("\n", 1)[0].strip()


class FreeTextTask(Task):
    """match='exact': normalised equality with the target. match='regex': the answer must fullmatch a pattern built
    from task.answer_regex, where '{answer}' stands for the escaped target (without it the pattern is fixed)."""

    kind = "free_text"
    default_prompt = DEFAULT_PROMPT
    input_chars = 500
    output_chars = 200

    def __init__(self, cfg: TaskConfig) -> None:
        super().__init__(cfg)
        if cfg.match == "regex":
            if not cfg.answer_regex:
                raise ConfigError("task.answer_regex: required when task.match = 'regex' "
                                  "(e.g. '(?i)\\s*{answer}\\.?' — {answer} is the escaped target)")
            try:
                re.compile(cfg.answer_regex.replace("{answer}", "x"))
            except re.error as err:
                raise ConfigError(f"task.answer_regex: not a valid regex ({err})") from None

    def pattern_for(self, target_text: str) -> str:
        """The regex a prediction must fully match for this target (regex mode)."""
        assert self.cfg.answer_regex is not None
        return self.cfg.answer_regex.replace("{answer}", re.escape(target_text.strip()))



    @property
    def stop(self) -> list[str]:
        """One line per answer."""
        return ["\n"]

    def extract(self, output: str, ex: Example) -> str | None:
        """The first line of the output, or None when it is empty."""
        line = first_line(output)
        return line or None

    def is_correct(self, predicted: str | None, ex: Example) -> bool:
        """Normalised equality (exact) or a full regex match (regex)."""
        if predicted is None:
            return False
        if self.cfg.match == "regex":
            try:
                return re.fullmatch(ex.answer, predicted.strip()) is not None
            except re.error:
                return False
        return normalise_answer(predicted) == normalise_answer(ex.answer)

    def example_from_fields(self, text: str, target: Any, choices: list[str] | None, fields: DataConfig | None = None) -> Example:
        """An Example from a row's input and target text."""
        value = str(target).strip()
        if not value:
            raise RowProblem(f"field '{target_name(fields)}' is empty")
        if "\n" in value:
            raise RowProblem(f"field '{target_name(fields)}' has several lines; free_text answers are one line")
        return self._example(text, value)

    def _example(self, text: str, value: str, meta: dict[str, Any] | None = None) -> Example:
        answer = self.pattern_for(value) if self.cfg.match == "regex" else value
        return Example(input=text, target=" " + value, answer=answer, meta=meta or {})

    # teacher ------------------------------------------------------------------------------------------
    def teacher_messages(self, ex: Example, student_output: str | None, k: int, *, is_miss: bool = True,
                         grounding: Sequence[Example] = (), diversity: Diversity = NO_DIVERSITY) -> list[dict[str, str]]:
        """Ask for k new input/output pairs like the missed one."""
        return teacher_chat(load_template("free_text").render(
            task=self.cfg.description or "Given the input, write the expected one-line output.", k=k,
            input=clip(ex.input, 2 * self.input_chars), output=ex.target.strip(), is_miss=is_miss,
            student_answer=student_said(student_output, self.extract(student_output or "", ex)),
            grounding=[clip(g.input, self.input_chars) for g in grounding], **diversity.inputs()))

    def teacher_schema(self, k: int) -> dict[str, Any]:
        """{'examples': [{'input', 'output'}] × k}."""
        item = object_schema({"input": bounded_string(self.input_chars, 2), "output": bounded_string(self.output_chars)})
        return examples_schema(item, k)

    def parse_teacher(self, reply: dict[str, Any], parent: Example) -> list[Example]:
        """Examples from the reply (outputs cut to their first line)."""
        return [self._example(str(item.get("input", "")).strip(), first_line(str(item.get("output", ""))))
                for item in reply.get("examples", [])]

    def reject_reason(self, ex: Example) -> str | None:
        """'empty_input', 'empty_output', or (regex) 'answer_mismatch' when the output does not match its pattern."""
        if not ex.input.strip():
            return "empty_input"
        if not ex.target.strip():
            return "empty_output"
        if self.cfg.match == "regex" and not self.is_correct(ex.target.strip(), ex):
            return "answer_mismatch"
        return None
