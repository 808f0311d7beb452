"""What the exported cards say about a run, read from the store: the teacher and its model hash, the student's base,
the new examples each round kept and rejected, and the origin of every training row."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine.config.schema import RunConfig
from engine.store.db import Store

# A training row's origin, and what it means: seed, else examples.meta.origin of a row no teacher wrote, else teacher.
ORIGINS: dict[str, str] = {
    "seed": "a seed example: real text with the user's label",
    "teacher": "written by the teacher from the example in `parent_id` (a miss, or a target of loop.targets); "
               "`teacher_call` wrote it",
    "pool": "a real input from data.unlabeled nearest the example in `parent_id`, given that example's label and kept "
            "when the teacher's blind verification (`teacher_call`) agreed (loop.source = pool)",
    "oracle": "a real labelled row of data.pool (else the seed file) that no split used, nearest the example in "
              "`parent_id`, with its own label (loop.source = oracle)",
    "eda": "an edit of the example in `parent_id` (swaps, deletions, insertions, replacements; loop.source = eda), "
           "no model",
}
_LLAMA_IDENTITY = re.compile(r"^llama_cpp:([0-9a-f]{64}):")


def other_origins(store: Store, run_id: int) -> dict[int, str]:
    """Origins of the kept synthetic rows no teacher wrote (pool, oracle, eda: their meta says), by example id."""
    return store.kept_origins(run_id)


def origin_of(row: dict[str, Any], others: dict[int, str]) -> str:
    """A training row's origin: seed, teacher, pool, oracle or eda."""
    if row["split"] == "seed":
        return "seed"
    return others.get(int(row["id"]), "teacher")


@dataclass
class RoundCounts:
    """The new examples of one round: how many were made, kept, rejected (by reason) and left undecided."""

    made: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    pending: int = 0


def round_counts(store: Store, run_id: int) -> dict[int, RoundCounts]:
    """Per origin round, the new examples' decisions as the examples table holds them."""
    out: dict[int, RoundCounts] = {}
    for idx, status, reason, n in store.synthetic_decisions(run_id):
        counts = out.setdefault(int(idx if idx is not None else -1), RoundCounts())
        counts.made += n
        if status == "kept":
            counts.kept += n
        elif status == "rejected":
            counts.rejected[reason or "unstated"] += n
        else:
            counts.pending += n
    return out


@dataclass
class TeacherFacts:
    """The teacher as the run recorded it: its configured name, backend, the file it loaded and the file's sha256."""

    name: str
    backend: str
    loaded: str | None  # the model file llama.cpp loaded, or the model the server said it serves
    sha256: list[str]  # from the cache identities of the teacher calls behind this run's rows (several: it changed)
    calls: int  # teacher calls recorded for this run's rows or made by it
    unknown_why: str | None  # why there is no sha256


def teacher_facts(store: Store, run_id: int, cfg: RunConfig) -> TeacherFacts:
    """The teacher behind the run's rows; its sha256 only from the identities its calls were stored under."""
    identities = store.teacher_models(run_id)
    digests = sorted({m.group(1) for ident, _ in identities if ident and (m := _LLAMA_IDENTITY.match(str(ident)))})
    info = store.run(run_id).teacher or {}
    loaded = (info.get("server_model") or info.get("model")) if cfg.teacher.backend == "openai" else info.get("model")
    why = None
    if not digests:
        if not identities:
            why = "the store holds no teacher call of this run"
        elif cfg.teacher.backend == "openai":
            why = "an OpenAI-compatible server answered; its weights cannot be hashed from the client"
        else:
            why = "the teacher calls' identities hold no model hash"
    return TeacherFacts(name=cfg.teacher.model, backend=cfg.teacher.backend, loaded=str(loaded) if loaded else None,
                        sha256=digests, calls=sum(int(n) for _, n in identities), unknown_why=why)


@dataclass
class StudentFacts:
    """The student's base model: its configured name and, when llm2llm can vouch for it, the file's sha256."""

    name: str
    sha256: str | None
    licence: str | None
    source: str  # where the hash comes from, or why there is none


def student_facts(cfg: RunConfig) -> StudentFacts:
    """A catalog student's sha256 is the one its download was checked against; a local path's is not recorded."""
    from models.catalog import entry
    from models.errors import ModelNotFoundError

    try:
        known = entry(cfg.student.model)
    except ModelNotFoundError:
        return StudentFacts(cfg.student.model, None, None, "a local model path: llm2llm records no hash of it")
    return StudentFacts(cfg.student.model, known.sha256, known.licence,
                        f"the catalog's sha256 of {known.file_name}, checked when it was downloaded")


def pct(value: float | None) -> str:
    """An accuracy as a percentage with one decimal, or a dash when it was not measured."""
    return "–" if value is None else f"{100 * value:.1f}"


def size_category(n: int) -> str:
    """The Hub's size_categories bucket of n rows."""
    for bound, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
                        (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < bound:
            return name
    return "n>100M"


def task_categories(kind: str) -> list[str]:
    """The Hub's task_categories of a task kind."""
    return {"classification": ["text-classification"], "multiple_choice": ["multiple-choice"],
            "math": ["text-generation", "question-answering"]}.get(kind, ["text-generation"])
