"""`l2l judge`: how often the teacher, asked blind as it verifies candidates, gives real rows their true label."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from engine.augment import verify_request, verify_verdict
from engine.config import RunConfig
from engine.tasks.base import Example, Task
from models.errors import ConfigError
from models.teacher.base import Teacher


@dataclass(frozen=True)
class JudgeReport:
    """The teacher's blind verdicts on real rows whose answers are known."""

    split: str
    verdicts: Counter[str]  # 'agrees' or the reason a candidate with this text would be rejected
    wrong_by_answer: Counter[str]
    rows_by_answer: Counter[str]
    seconds: float

    @property
    def rows(self) -> int:
        """How many rows were judged."""
        return sum(self.verdicts.values())

    @property
    def agreement(self) -> float:
        """Share of rows the teacher gives their true answer: its accuracy as a judge."""
        return self.verdicts["agrees"] / self.rows if self.rows else 0.0

    @property
    def majority(self) -> tuple[str, float]:
        """The most frequent true answer and its share: what always answering it would score."""
        answer, count = self.rows_by_answer.most_common(1)[0]
        return answer, count / self.rows

    def warning(self) -> str | None:
        """Why verification may do harm with this teacher, or None."""
        answer, share = self.majority
        if self.agreement > share:
            return None
        return (f"the teacher gives {self.agreement:.0%} of these rows their true answer, no better than always "
                f"answering {answer!r} ({share:.0%}): its verification rejects right candidates about as often as wrong "
                "ones. Use a stronger teacher, or set checks.verify = false and say so.")

    def lines(self) -> list[str]:
        """The report as plain lines for the terminal."""
        answer, share = self.majority
        per_answer = ", ".join(f"{a} {self.rows_by_answer[a] - self.wrong_by_answer[a]}/{self.rows_by_answer[a]}"
                               for a, _ in self.rows_by_answer.most_common())
        out = [f"{self.rows} real {self.split} rows judged blind in {self.seconds:.0f} s",
               f"the teacher agrees with the true answer on {self.verdicts['agrees']} ({self.agreement:.1%}); "
               f"always answering {answer!r} would score {share:.1%}",
               "verdicts: " + ", ".join(f"{k} {v}" for k, v in self.verdicts.most_common()),
               f"right per true answer: {per_answer}"]
        warning = self.warning()
        return out + ([f"warning: {warning}"] if warning else [])


def judge(task: Task, cfg: RunConfig, examples: Sequence[Example], teacher: Teacher, split: str) -> JudgeReport:
    """Ask the teacher to verify each real example blind, with the run's own verification call, and count."""
    if not task.verifies:
        raise ConfigError("l2l judge: this task has no blind verification (classification, multiple choice and math "
                          "do); there is nothing to judge")
    requests = [verify_request(task, cfg, ex, identity="judge") for ex in examples]
    t0 = time.perf_counter()
    replies = teacher.generate(requests)
    seconds = time.perf_counter() - t0
    verdicts: Counter[str] = Counter()
    wrong: Counter[str] = Counter()
    for ex, reply in zip(examples, replies, strict=True):
        verdict = verify_verdict(task, ex, reply.text if reply.error is None else None) or "agrees"
        verdicts[verdict] += 1
        wrong[str(ex.answer)] += verdict != "agrees"
    return JudgeReport(split=split, verdicts=verdicts, wrong_by_answer=wrong,
                       rows_by_answer=Counter(str(ex.answer) for ex in examples), seconds=seconds)
