"""Build the Task for a TaskConfig."""

from __future__ import annotations

from engine.config.presets import PRESETS
from engine.config.schema import TaskConfig
from engine.tasks.base import Task
from engine.tasks.classification import ClassificationTask
from engine.tasks.free_text import FreeTextTask
from engine.tasks.math import MathTask
from engine.tasks.multiple_choice import MultipleChoiceTask
from models.errors import ConfigError

TASK_KINDS: dict[str, type[Task]] = {
    "math": MathTask,
    "classification": ClassificationTask,
    "multiple_choice": MultipleChoiceTask,
    "free_text": FreeTextTask,
}


def make_task(cfg: TaskConfig) -> Task:
    """The task kind's implementation bound to cfg; ConfigError when the kind is missing or its settings are invalid."""
    if cfg.kind is None:
        raise ConfigError(f"task.kind: required (one of {', '.join(TASK_KINDS)}), "
                          f"or task.preset (one of {', '.join(sorted(PRESETS))})")
    return TASK_KINDS[cfg.kind](cfg)
