"""The contract every task kind fulfils, and the Example record the whole engine passes around."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.config.schema import TaskConfig
from engine.tasks.common import fill_template, split_template
from engine.tasks.teacher_prompt import NO_DIVERSITY, Diversity


@dataclass(frozen=True)
class Example:
    """One example: what the student reads, the full response it learns, and the gold answer it is scored on."""

    input: str
    target: str  # response text the student is trained to produce (e.g. GSM8K rationale ending "#### 72")
    answer: str  # canonical gold answer scored against (number, label name, option letter, text/regex)
    choices: tuple[str, ...] | None = None  # multiple-choice options, in order
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


class Task(ABC):
    """A task kind bound to a TaskConfig."""

    kind: str
    default_prompt: str  # used when task.prompt is unset; {input} is the example text
    verifies: bool = False  # whether the teacher can check a candidate blind (verify_messages and friends)

    def __init__(self, cfg: TaskConfig) -> None:
        self.cfg = cfg
        split_template(self.template)  # a template mixing {input} and row fields is refused here

    @property
    def template(self) -> str:
        """The prompt template as written (task.prompt, else the kind's default)."""
        return self.cfg.prompt or self.default_prompt

    @property
    def prompt_template(self) -> str:
        """The template the prompt is rendered from: '{input}' stands for the example's input text, which a template
        naming row fields ('{Body} {Question}') composes from those fields when the data is loaded."""
        return split_template(self.template)[1]

    def render_prompt(self, ex: Example) -> str:
        """Student prompt, ending where the response starts (e.g. '...\\nAnswer:')."""
        return fill_template(self.prompt_template, input=ex.input)

    def render_response(self, ex: Example) -> str:
        """Training target appended to the prompt (starts with a space, no trailing EOS)."""
        return ex.target

    def label_options(self, ex: Example) -> list[str] | None:
        """Continuations to score by log-likelihood (classification/MC); None means generate."""
        return None

    @property
    def stop(self) -> list[str]:
        """Strings that end greedy generation."""
        return ["\n\n"]

    @abstractmethod
    def extract(self, output: str, ex: Example) -> str | None:
        """The answer found in the student's output, or None."""

    @abstractmethod
    def is_correct(self, predicted: str | None, ex: Example) -> bool:
        """Whether the extracted answer matches the gold answer."""

    @abstractmethod
    def teacher_messages(self, ex: Example, student_output: str | None, k: int, *, is_miss: bool = True,
                         grounding: Sequence[Example] = (), diversity: Diversity = NO_DIVERSITY) -> list[dict[str, str]]:
        """Chat messages asking the teacher for k new examples modelled on `ex` (a miss unless is_miss is False).

        student_output None leaves the student's answer out; `grounding` are real seed examples shown for style;
        `diversity` the [augment] levers' additions (none by default: today's prompt).
        """

    @abstractmethod
    def teacher_schema(self, k: int) -> dict[str, Any]:
        """JSON schema the teacher's reply is constrained to ({'examples': [...]}, bounded string lengths)."""

    @abstractmethod
    def parse_teacher(self, reply: dict[str, Any], parent: Example) -> list[Example]:
        """Examples built from a schema-valid teacher reply."""

    def reject_reason(self, ex: Example) -> str | None:
        """Why a new example is unusable for this task (e.g. 'label_not_in_set', 'no_number'), or None."""
        return None

    @property
    def input_noun(self) -> str:
        """What an input is called: the word before '{input}' in the prompt ('Review: {input}' → 'review'), else 'input'."""
        m = re.search(r"(\w+)\s*:\s*\{\w+\}", self.template)
        return m.group(1).casefold() if m else "input"

    # blind verification by the teacher (checks.verify); kinds without one return None
    def verify_messages(self, ex: Example, shots: Sequence[Example] = ()) -> list[dict[str, str]]:
        """Chat messages asking the teacher to answer a candidate blind, without its label or answer; shots are real
        labelled examples that show what each label means (used where labels are names: classification)."""
        raise NotImplementedError(f"{self.kind} has no blind verification")

    def verify_schema(self) -> dict[str, Any]:
        """JSON schema of the blind answer."""
        raise NotImplementedError(f"{self.kind} has no blind verification")

    def verify_verdict(self, reply: dict[str, Any], ex: Example) -> str | None:
        """None when the blind answer agrees with the candidate's, else the rejection reason."""
        raise NotImplementedError(f"{self.kind} has no blind verification")
