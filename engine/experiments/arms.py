"""Arms of an experiment: named lists of `--set` overrides, the built-in baselines, and the settings matched to a reference run."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from engine.config.schema import SweepConfig, parse_override
from engine.store.db import Store
from models.errors import ConfigError

Matched = Literal["steps", "budget", "kept"]


@dataclass(frozen=True)
class Arm:
    """A named recipe: overrides applied to the sweep's config, and what (if anything) it takes from the reference run."""

    name: str
    overrides: tuple[str, ...]
    about: str
    matched: Matched | None = None  # steps: the reference's optimizer steps; budget: its teacher examples; kept: its kept
    # examples per round
    reference: str | None = None  # the arm a matched arm takes them from (None: not in the sweep, nothing matched)

    def as_row(self) -> dict[str, Any]:
        """The arm as stored on the sweep."""
        return {"name": self.name, "overrides": list(self.overrides), "about": self.about, "matched": self.matched,
                "reference": self.reference}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Arm:
        """An arm as stored on a sweep."""
        return cls(name=row["name"], overrides=tuple(row["overrides"]), about=row["about"], matched=row.get("matched"),
                   reference=row.get("reference"))


# The paper's recipe (SqueezeAILab/LLM2LLM): one example per miss, misses among the seeds only, no filters beyond
# dedup and the answer format, and a teacher that never sees the student's answer.
PAPER = (
    "loop.targets=misses", "loop.examples_per_miss=1", "loop.miss_source=seed", "loop.confidence_threshold=0",
    "teacher.show_student_answer=false", "checks.verify=false", "checks.meta_text=false",
    "checks.requested_label=false", "checks.grounding=0", "checks.length=0", "checks.label_balance=0",
    "checks.language=false", "checks.prompt_echo=false", "checks.questions=false",
)

# Checks that judge a teacher's writing: off for sources without a teacher (their dedup and balance checks stay on).
NO_MODEL_CHECKS = ("checks.verify=false", "checks.meta_text=false", "checks.prompt_echo=false")

# One ablation per check of the product's recipe: llm2llm with that check alone switched off.
ABLATIONS = {
    "no_verify": ("checks.verify=false", "the teacher's blind labelling / solving"),
    "no_meta_text": ("checks.meta_text=false", "the text-about-an-example filter"),
    "no_requested_label": ("checks.requested_label=false", "rejecting labels other than the miss's"),
    "no_grounding": ("checks.grounding=0", "real seed examples in the teacher prompt"),
    "no_length": ("checks.length=0", "the length range of the seeds"),
    "no_label_balance": ("checks.label_balance=0", "the per-label cap"),
    "no_siblings": ("checks.siblings=false", "dedup among one round's candidates"),
    "no_repair": ("checks.repair_escapes=false", "rejecting control characters and unpaired $ math"),
    "no_questions": ("checks.questions=false", "rejecting statements and answers where the seeds are questions"),
    "no_language": ("checks.language=false", "rejecting text in another language than the seeds'"),
    "no_prompt_echo": ("checks.prompt_echo=false", "rejecting text that repeats the teacher's instructions"),
    "no_restatement": ("checks.restatement=0", "rejecting rewordings of the parent or a sibling (word containment)"),
}

# One arm per lever against a teacher that copies the example it is shown ([augment], issue 29): llm2llm with that
# lever alone switched on; compare their augment/filter details (copy_call_share, kept_per_call) with llm2llm's.
DIVERSITY_LEVERS = {
    "taboo": ("augment.taboo_words=12", "the example's 12 longest content words forbidden in the teacher prompt"),
    "shown_earlier": ("augment.show_earlier=6", "up to 6 examples written from the same example in earlier rounds "
                                                "shown to the teacher as already written"),
    "several_per_call": ("augment.differ=true", "the examples of one call asked to differ from one another, and "
                                                "required distinct by the reply schema"),
    "hot_retry": ("augment.hot_retry=0.3", "a call whose examples all copy its example asked once more at "
                                           "temperature + 0.3 (at most 1.5)"),
}

BUILTIN: dict[str, Arm] = {arm.name: arm for arm in (
    Arm("llm2llm", (), "the product's settings, as the config gives them"),
    Arm("paper", PAPER, "the paper's recipe: 1 example per wrong seed answer, dedup and answer format only, "
                        "the teacher does not see the student's answer"),
    Arm("random", ("loop.targets=random",), "as many teacher calls a round as there are misses, for randomly drawn "
                                           "seed examples instead"),
    Arm("one_shot", ("loop.targets=all", "loop.rounds=2"), "the teacher writes for every seed example once, with the "
                                                            "reference arm's total teacher budget; then one training",
        matched="budget"),
    Arm("plain", ("loop.rounds=1",), "plain fine-tuning on the seeds alone, with as many optimizer steps as the "
                                     "reference arm's chosen round", matched="steps"),
    Arm("plain_tuned", ("loop.rounds=1",), "plain fine-tuning on the seeds alone, trained to its own best length on "
                                           "validation (train.eval_every; without it, the config's epochs)"),
    Arm("eda", ("loop.source=eda", *NO_MODEL_CHECKS), "word-level edits of each miss (swap, delete, insert, replace "
                                                      "from the seed vocabulary), as many kept a round as the "
                                                      "reference arm kept: the cheap augmenter", matched="kept"),
    Arm("oracle", ("loop.source=oracle", *NO_MODEL_CHECKS), "real unused rows of the data file nearest each miss, "
                                                            "with their true labels, as many kept a round as the "
                                                            "reference arm kept: the ceiling", matched="kept"),
    Arm("pool", ("loop.source=pool",), "real unlabeled rows (data.unlabeled) nearest each miss, labelled blind by the "
                                       "teacher and kept where that label is the miss's"),
    Arm("pool_random", ("loop.source=pool", "loop.pool_pick=random"), "as many unlabeled rows drawn at random instead "
                                                                      "of near misses, labelled the same way: "
                                                                      "self-training"),
    *(Arm(name, (override,), f"llm2llm without {what}") for name, (override, what) in ABLATIONS.items()),
    Arm("verify_shots", ("checks.verify_shots=1",), "llm2llm with the blind labeller shown one real seed example per "
                                                    "label"),
    *(Arm(name, (override,), f"llm2llm with {what}") for name, (override, what) in DIVERSITY_LEVERS.items()),
    Arm("diverse", tuple(override for override, _ in DIVERSITY_LEVERS.values()),
        "llm2llm with every lever against copies of the example at once"),
)}


def resolve_arms(sweep: SweepConfig, names: list[str] | None = None) -> list[Arm]:
    """The arms to run (built-in or defined in [sweep.define]), reference arm first and matched arms last."""
    defined = {name: Arm(name, tuple(overrides), "defined in the config: " + ", ".join(overrides) if overrides else "defined in the config")
               for name, overrides in sweep.define.items()}
    clash = sorted(set(defined) & set(BUILTIN))
    if clash:
        raise ConfigError(f"sweep.define: {', '.join(clash)} would replace a built-in arm; pick another name")
    known = {**BUILTIN, **defined}
    wanted = names or sweep.arms
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(f"sweep.arms: unknown arm {unknown[0]!r} (known: {', '.join(sorted(known))})")
    if len(set(wanted)) != len(wanted):
        raise ConfigError(f"sweep.arms: an arm is listed twice ({', '.join(wanted)})")
    for arm in defined.values():
        for text in arm.overrides:
            parse_override(text)  # a malformed override is refused before anything runs
    reference = sweep.match if sweep.match in wanted and known[sweep.match].matched is None else None
    arms = [replace(known[n], reference=reference) if known[n].matched else known[n] for n in wanted]
    return sorted(arms, key=lambda a: (a.matched is not None, a.name != sweep.match))


def matched_overrides(arm: Arm, store: Store, reference_run: int | None) -> list[str]:
    """What an arm takes from the reference run of its seed set (nothing when it is not matched or has no reference)."""
    if arm.matched is None or reference_run is None:
        return []
    rounds = store.rounds(reference_run)
    if arm.matched == "steps":
        best = store.run(reference_run).best_round or 0
        steps = rounds[best].train.get("steps")
        return [f"train.steps={steps}", "train.eval_every=0"] if steps else []
    if arm.matched == "kept":
        # as many kept a round as the reference kept, made for the same kind of targets (its misses, or every seed
        # example when the reference is a write-for-all arm): edits or real rows of what the teacher wrote from
        kept = [r.kept for r in rounds if r.phase == "done" and r.kept is not None]
        targets = store.run(reference_run).config["loop"]["targets"]
        return ([f"loop.keep_limits={kept}", f"loop.rounds={len(kept) + 1}", f"loop.targets={targets}"] if kept
                else ["loop.rounds=1"])
    budget = sum(r.augment.get("examples_requested") or 0 for r in rounds)
    return [f"loop.teacher_examples={budget}"] if budget else ["loop.rounds=1"]
