"""The filter phase's decisions: every candidate passes the cheap checks, dedup and (optionally) the teacher's blind
verification; the survivors are capped per label. Each rejection carries one counted reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from engine.config.schema import ChecksConfig
from engine.data.dedup import DedupIndex, Restatements
from engine.data.example_rows import example_from_row
from engine.filter.checks import (
    LanguageCheck,
    LengthRange,
    MetaText,
    PromptEcho,
    asks,
    balance_cap,
    has_control_chars,
    label_mismatch,
    seeds_ask,
    seeds_pair_dollars,
    unpaired_dollars,
)
from engine.store.rows import StoredExample
from engine.tasks.base import Task

# Which existing rows a duplicate copies decides its reason (exact and near copies alike).
DUPLICATE_OF = {"seed": "copy_of_seed", "validation": "leaks_eval", "test": "leaks_eval", "synthetic": "duplicate"}

Verify = Callable[[list[StoredExample]], dict[int, str | None]]  # candidate rows -> id: verdict (None: agrees)


@dataclass
class Decisions:
    """What the filter decided: a reason per rejected id, the kept ids, and counts of what was noticed but kept."""

    rejected: dict[int, str] = field(default_factory=dict)
    kept: list[int] = field(default_factory=list)
    flags: Counter[str] = field(default_factory=Counter)

    @property
    def reasons(self) -> Counter[str]:
        """Rejections per reason."""
        return Counter(self.rejected.values())


class CandidateFilter:
    """The checks of one round, built from the run's rows: what the seeds look like and what exists already."""

    def __init__(self, task: Task, checks: ChecksConfig, near_duplicate: float, existing: list[StoredExample],
                 training: list[StoredExample]) -> None:
        self.task = task
        self.checks = checks
        self.meta = MetaText(task, checks.meta_patterns) if checks.meta_text else None
        seeds = [r for r in existing if r.split == "seed"]
        self.length = LengthRange.of_seeds((r.input for r in seeds), checks.length)
        self.language = LanguageCheck(r.input for r in seeds) if checks.language else None
        self.paired_math = checks.repair_escapes and seeds_pair_dollars(r.input for r in seeds)
        self.questions = checks.questions and seeds_ask(r.input for r in seeds)
        self.echo = PromptEcho(task, example_from_row(seeds[0])) if checks.prompt_echo and seeds else None
        self.input_of: dict[int | None, str] = {r.id: r.input for r in existing}
        self.reference = DedupIndex(near_duplicate)
        self.split_of: dict[Hashable, str] = {}
        for row in existing:
            self.reference.add(row.input, row.id)
            self.split_of[row.id] = row.split
        self.near_duplicate = near_duplicate
        seed_labels = Counter(r.answer for r in seeds)
        self.seed_share = {label: n / sum(seed_labels.values()) for label, n in seed_labels.items()}
        self.training_labels = Counter(r.answer for r in training)

    def screen(self, row: StoredExample, flags: Counter[str]) -> str | None:
        """The first cheap check the candidate fails, or None (nothing here calls a model)."""
        ex = example_from_row(row)
        reason = self.task.reject_reason(ex)
        if reason is not None:
            return reason
        if self.checks.repair_escapes and any(has_control_chars(text) for text in (ex.input, ex.target, *(ex.choices or ()))):
            return "control_chars"
        if self.paired_math and unpaired_dollars(ex.input):
            return "unbalanced_math"
        if self.echo is not None and any(self.echo.match(text) for text in (ex.input, *(ex.choices or ()))):
            return "prompt_echo"
        if self.meta is not None and self.meta.match(ex.input):
            return "meta_text"
        if self.questions and not asks(ex.input):
            return "not_a_question"
        if self.language is not None and not self.language.allows(ex.input, self.input_of.get(row.parent_id)):
            return "wrong_language"
        if self.length is not None and not self.length.allows(ex.input):
            return "length"
        if label_mismatch(self.task, ex):
            if self.checks.requested_label:
                return "label_mismatch"
            flags["label_mismatch_kept"] += 1
        hit = self.reference.match(ex.input)
        if hit is not None:
            return DUPLICATE_OF.get(self.split_of.get(hit[1], "synthetic"), "duplicate")
        return None

    def decide(self, pending: list[StoredExample], verify: Verify | None, seed: int) -> Decisions:
        """Screen, drop siblings that copy each other, verify the rest blind, then cap per label."""
        out = Decisions()
        survivors = []
        siblings = DedupIndex(self.near_duplicate)
        # the teacher rewording its parent or a sibling; rows another source made (meta.origin: eda, oracle, pool) are
        # edits or real rows on purpose, not a teacher's restatements
        restated = Restatements(self.checks.restatement)
        for row in pending:
            reason = self.screen(row, out.flags)
            if reason is None and self.checks.siblings and siblings.match(row.input) is not None:
                reason = "sibling_duplicate"
            parent = row.parent_id
            if (reason is None and not (row.meta or {}).get("origin")
                    and restated.match(row.input, parent, self.input_of.get(parent)) is not None):
                reason = "restatement"
            if reason is None:
                if self.checks.siblings:
                    siblings.add(row.input, row.id)
                restated.add(row.input, row.id, parent)
                survivors.append(row)
            else:
                out.rejected[row.id] = reason
        if verify is not None and survivors:
            verdicts = verify(survivors)
            for row in survivors:
                if verdicts.get(row.id):
                    out.rejected[row.id] = str(verdicts[row.id])
            survivors = [r for r in survivors if r.id not in out.rejected]
        if self.checks.label_balance > 0 and self.task.kind == "classification" and survivors:
            keep = balance_cap(self.training_labels, self.seed_share, [(r.id, r.answer) for r in survivors],
                               self.checks.label_balance, seed)
            for row in survivors:
                if row.id not in keep:
                    out.rejected[row.id] = "label_balance"
            survivors = [r for r in survivors if r.id in keep]
        out.kept = [r.id for r in survivors]
        return out
