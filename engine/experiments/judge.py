"""`l2l judge`: how often the teacher, asked blind as it verifies candidates, gives real rows their true label."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from math import comb

from engine.augment.requests import verify_request, verify_shots, verify_verdict
from engine.config.schema import RunConfig
from engine.tasks.base import Example, Task
from models.errors import ConfigError
from models.teacher.base import Teacher, TeacherRequest


@dataclass(frozen=True)
class JudgeReport:
    """The teacher's blind verdict on each real row of a split, whose true answers are known."""

    split: str
    answers: tuple[str, ...]  # each row's true answer
    verdicts: tuple[str, ...]  # each row's verdict: 'agrees', or the reason a candidate with its text would be rejected
    seconds: float

    @property
    def rows(self) -> int:
        """How many rows were judged."""
        return len(self.verdicts)

    @property
    def right(self) -> tuple[bool, ...]:
        """Per row: did the teacher give the true answer."""
        return tuple(v == "agrees" for v in self.verdicts)

    @property
    def agreement(self) -> float:
        """Share of rows the teacher gives their true answer: its accuracy as a judge."""
        return sum(self.right) / self.rows if self.rows else 0.0

    @property
    def majority(self) -> tuple[str, float]:
        """The most frequent true answer and its share: what always answering it would score."""
        answer, count = Counter(self.answers).most_common(1)[0]
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
        rows, right = Counter(self.answers), Counter(a for a, ok in zip(self.answers, self.right, strict=True) if ok)
        out = [f"{self.rows} real {self.split} rows judged blind in {self.seconds:.0f} s",
               f"the teacher agrees with the true answer on {sum(self.right)} ({self.agreement:.1%}); "
               f"always answering {answer!r} would score {share:.1%}",
               "verdicts: " + ", ".join(f"{k} {v}" for k, v in Counter(self.verdicts).most_common()),
               "right per true answer: " + ", ".join(f"{a} {right[a]}/{n}" for a, n in rows.most_common())]
        warning = self.warning()
        return out + ([f"warning: {warning}"] if warning else [])


def paired(base: JudgeReport, other: JudgeReport) -> str:
    """other against base on the same rows: the difference in points, the rows only one gets right, and the exact
    two-sided McNemar p (a binomial test on those rows)."""
    if base.answers != other.answers:
        raise ValueError("paired judge reports must cover the same rows")
    gained = sum(o and not b for b, o in zip(base.right, other.right, strict=True))
    lost = sum(b and not o for b, o in zip(base.right, other.right, strict=True))
    n = gained + lost
    p = min(1.0, 2 * sum(comb(n, i) for i in range(min(gained, lost) + 1)) / 2**n) if n else 1.0
    return (f"paired on the same {base.rows} rows: {100 * (other.agreement - base.agreement):+.1f} points; "
            f"right only with the comparison {gained}, only without it {lost}; exact McNemar p = {p:.3f}")


def judge_requests(task: Task, cfg: RunConfig, examples: Sequence[Example], identity: str,
                   seeds: Sequence[Example] = ()) -> list[TeacherRequest]:
    """The run's own blind verification call for each real example (its shots drawn from seeds as the loop draws
    them, never the judged row itself), keyed under the teacher's identity."""
    if not task.verifies:
        raise ConfigError("l2l judge: this task has no blind verification (classification, multiple choice and math "
                          "do); there is nothing to judge")
    shots = verify_shots(task, seeds, cfg.checks.verify_shots)
    return [verify_request(task, cfg, ex, identity, [s for s in shots if s.input != ex.input]) for ex in examples]


def judge_report(task: Task, examples: Sequence[Example], replies: Sequence[str | None], split: str,
                 seconds: float) -> JudgeReport:
    """Count the blind replies (None: no usable reply) against the examples' true answers."""
    verdicts = tuple(verify_verdict(task, ex, reply) or "agrees" for ex, reply in zip(examples, replies, strict=True))
    return JudgeReport(split=split, answers=tuple(str(ex.answer) for ex in examples), verdicts=verdicts, seconds=seconds)


def judge(task: Task, cfg: RunConfig, examples: Sequence[Example], teacher: Teacher, split: str,
          seeds: Sequence[Example] = ()) -> JudgeReport:
    """Ask the teacher to verify each real example blind, with the run's own verification call, and count."""
    requests = judge_requests(task, cfg, examples, "judge", seeds)
    t0 = time.perf_counter()
    replies = teacher.generate(requests)
    seconds = time.perf_counter() - t0
    return judge_report(task, examples, [r.text if r.error is None else None for r in replies], split, seconds)
