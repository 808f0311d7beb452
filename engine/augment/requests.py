"""The augment phase's pieces: which seed examples the teacher writes from, how many each, and the cached requests."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from engine.config.schema import RunConfig
from engine.data.dedup import DedupIndex, normalise
from engine.data.example_rows import example_from_row
from engine.store.rows import Prediction, StoredExample, TeacherCall
from engine.tasks.base import Example, Task
from engine.tasks.classification import ClassificationTask
from engine.tasks.teacher_prompt import Diversity, clip, content_words, distinct_examples, max_reply_chars
from models.teacher.base import TeacherRequest, check_reply

MAX_PER_CALL = 16  # examples one teacher call may be asked for (the reply schema grows with it)
EARLIER_CHARS = 300  # each earlier candidate shown to the teacher (augment.show_earlier) is cut to this


@dataclass(frozen=True)
class Target:
    """A seed example the teacher writes new examples from, the student's answer to it, whether that is a miss, and how
    many to write."""

    row: StoredExample
    prediction: Prediction
    is_miss: bool
    k: int


def choose_targets(cfg: RunConfig, pool: list[StoredExample], misses: list[StoredExample], round_idx: int,
                   predictions: dict[int, Prediction]) -> list[Target]:
    """loop.targets: the misses; as many random pool rows as there are misses; or every pool row. Then the per-target
    counts: examples_per_miss each, or loop.teacher_examples spread evenly (extras to a seeded random few)."""
    missed = {r.id for r in misses}
    rng = random.Random(derive_seed(cfg.seed, round_idx, "targets"))
    if cfg.loop.targets == "misses":
        rows = misses
    elif cfg.loop.targets == "random":
        rows = sorted(rng.sample(pool, min(len(misses), len(pool))), key=lambda r: r.id)
    else:
        rows = list(pool)
    if not rows:
        return []
    budget = cfg.loop.teacher_examples
    if budget is None:
        counts = [cfg.loop.examples_per_miss] * len(rows)
    else:
        base, extra = divmod(budget, len(rows))
        lucky = set(rng.sample(range(len(rows)), extra))
        counts = [min(MAX_PER_CALL, base + (i in lucky)) for i in range(len(rows))]
    return [Target(row=r, prediction=predictions[r.id], is_miss=r.id in missed, k=k)
            for r, k in zip(rows, counts, strict=True) if k > 0]


def teacher_messages(task: Task, cfg: RunConfig, target: Target, grounding: list[Example],
                     earlier: Sequence[str] = ()) -> list[dict[str, str]]:
    """The chat for one target; the student's answer is shown only for a miss and only if the config allows; the
    [augment] levers add what `diversity` says (nothing by default)."""
    shown = target.prediction.output if target.is_miss and cfg.teacher.show_student_answer else None
    return task.teacher_messages(example_from_row(target.row), shown, target.k, is_miss=target.is_miss,
                                 grounding=grounding, diversity=diversity(cfg, target, earlier))


def diversity(cfg: RunConfig, target: Target, earlier: Sequence[str] = ()) -> Diversity:
    """What the [augment] levers add to a target's prompt: its content words as taboo, the earlier candidates written
    from it (already cut to augment.show_earlier), and the ask to differ when the call wants several examples."""
    lever = cfg.augment
    taboo = content_words(target.row.input, lever.taboo_words) if lever.taboo_words else []
    return Diversity(taboo=tuple(taboo), earlier=tuple(earlier) if lever.show_earlier else (),
                     differ=lever.differ and target.k > 1)


def teacher_schema(task: Task, cfg: RunConfig, target: Target) -> dict[str, Any]:
    """The reply schema of a target's call: the task's, with distinct examples required under augment.differ."""
    schema = task.teacher_schema(target.k)
    return distinct_examples(schema) if cfg.augment.differ and target.k > 1 else schema


# augment.show_earlier shows what the teacher wrote from the same example in EARLIER ROUNDS, not earlier in the round:
# a round's calls go out together (llama.cpp decodes them side by side in one batch), so showing one call's candidates
# to the next would make a target's k examples k calls in a row, each waiting for the one before (k times the round's
# wall time), and with the paper's one example per miss there is no earlier call at all. Across rounds the same seed is
# missed again most of the time (the README's demo: 19 misses in both rounds, and duplicates rejected rose from 14 of
# 57 candidates in round 0 to 29 of 57 in round 1), so the earlier rounds' candidates are there when copies are.
def earlier_candidates(rows: Sequence[StoredExample], round_idx: int, n: int) -> dict[int, list[str]]:
    """Per parent id, up to n distinct inputs of candidates written from it before round_idx (kept or rejected,
    newest round first, copies of the parent left out: the prompt shows the parent itself), each cut to EARLIER_CHARS."""
    if n <= 0:
        return {}
    by_id = {r.id: r for r in rows}
    out: dict[int, list[str]] = {}
    seen: dict[int, set[str]] = {}
    ordered = sorted((r for r in rows if r.parent_id is not None and (r.origin_round or 0) < round_idx
                      and r.status != "pending"), key=lambda r: (-(r.origin_round or 0), r.id))
    for row in ordered:
        parent, norm = row.parent_id, normalise(row.input)
        assert parent is not None
        shown = seen.setdefault(parent, set())
        if parent in by_id and normalise(by_id[parent].input) == norm:
            continue
        if not norm or norm in shown or len(shown) >= n:
            continue
        shown.add(norm)
        out.setdefault(parent, []).append(clip(row.input, EARLIER_CHARS))
    return out


def write_request(task: Task, cfg: RunConfig, identity: str, round_idx: int, target: Target, grounding: list[Example],
                  earlier: Sequence[str] = ()) -> TeacherRequest:
    """The cached call that asks the teacher for a target's k new examples."""
    tcfg = cfg.teacher
    messages = teacher_messages(task, cfg, target, grounding, earlier)
    schema = teacher_schema(task, cfg, target)
    seed = request_seed(cfg, round_idx, target)
    key = cache_key(identity, messages, schema, tcfg.temperature, tcfg.top_p, tcfg.max_tokens, seed)
    return TeacherRequest(key=key, messages=messages, schema=schema, max_tokens=tcfg.max_tokens,
                          temperature=tcfg.temperature, top_p=tcfg.top_p, seed=seed)


def read_write_call(task: Task, call: TeacherCall | None, schema: dict[str, Any],
                    parent: StoredExample) -> tuple[list[Example], str | None]:
    """The examples a stored write call holds and None, or no examples and why the call is unusable (a cached reply
    meets today's reply checks too, e.g. one cached before they existed)."""
    error = "no reply" if call is None else None if call.ok else (call.error or "unusable")
    parsed = None
    if call is not None and call.response is not None and error is None:
        parsed, error = check_reply(call.response, schema)
    if error is not None or parsed is None:
        return [], error or "unusable"
    return task.parse_teacher(parsed, example_from_row(parent)), None


def copies_its_seed(seed_text: str, texts: Sequence[str], threshold: float) -> bool:
    """Whether a call's candidates are all copies of the example they were written from, by the filter's own test
    against it (same normalised text, a near-duplicate at `threshold`, or a large piece of it); False for none."""
    if not texts:
        return False
    index = DedupIndex(threshold)
    index.add(seed_text, 0)
    return all(index.match(text) is not None for text in texts)


def hot_request(cfg: RunConfig, identity: str, request: TeacherRequest) -> TeacherRequest:
    """augment.hot_retry: the same call at the temperature plus hot_retry (capped at hot_retry_max, never below the
    call's own) with a seed of its own, so it has a key of its own: cached like any call, never paid twice."""
    lever = cfg.augment
    temperature = round(max(request.temperature, min(request.temperature + lever.hot_retry, lever.hot_retry_max)), 6)
    seed = derive_seed(request.seed, 0, "hot")
    key = cache_key(identity, request.messages, request.schema, temperature, request.top_p, request.max_tokens, seed)
    return TeacherRequest(key=key, messages=request.messages, schema=request.schema, max_tokens=request.max_tokens,
                          temperature=temperature, top_p=request.top_p, seed=seed)


def request_seed(cfg: RunConfig, round_idx: int, target: Target) -> int:
    """The sampling seed of a target's call: from content, not row ids, so the same miss in another run of the same
    seed set hits the teacher cache."""
    base = cfg.teacher.seed if cfg.teacher.seed is not None else cfg.seed
    return derive_seed(base, round_idx, target.row.content_hash)


def cache_key(identity: str, messages: list[dict[str, str]], schema: dict[str, Any], temperature: float,
              top_p: float, max_tokens: int, seed: int) -> str:
    """What decides a teacher reply, hashed: the teacher cache's key."""
    payload = json.dumps([identity, messages, schema, temperature, top_p, max_tokens, seed], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def derive_seed(base: int, round_idx: int, salt: str) -> int:
    """A 31-bit seed from a base seed, a round and a salt (stable across processes and runs)."""
    digest = hashlib.sha256(f"{base}:{round_idx}:{salt}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def grounding(task: Task, target: StoredExample, seeds: list[StoredExample], n: int) -> list[StoredExample]:
    """Up to n real seed examples shown beside the target for length and register: of the same label for
    classification, any other seed otherwise; drawn from the target's content, so the prompt (and cache key) is stable."""
    if n <= 0:
        return []
    same = [r for r in seeds if r.id != target.id and (task.kind != "classification" or r.answer == target.answer)]
    rng = random.Random(derive_seed(0, 0, "grounding:" + target.content_hash))
    return rng.sample(same, min(n, len(same)))


def verify_shots(task: Task, seeds: Sequence[Example], per_label: int) -> list[Example]:
    """checks.verify_shots: up to per_label real seed examples of each label, in label order, drawn by a hash of their
    text (stable across runs of the same seeds); none for kinds whose labels need no explaining."""
    if not isinstance(task, ClassificationTask) or per_label <= 0:
        return []
    ordered = sorted(seeds, key=lambda ex: hashlib.sha256(ex.input.encode()).digest())
    return [ex for label in task.labels for ex in [s for s in ordered if s.answer == label][:per_label]]


def verify_request(task: Task, cfg: RunConfig, ex: Example, identity: str, shots: Sequence[Example] = ()) -> TeacherRequest:
    """The blind verification call for one example (greedy, seed 0), keyed for the teacher cache under identity."""
    messages = task.verify_messages(ex, shots)
    schema = task.verify_schema()
    max_tokens = min(cfg.teacher.max_tokens, max_reply_tokens(schema))
    key = cache_key(identity, messages, schema, 0.0, 1.0, max_tokens, 0)
    return TeacherRequest(key=key, messages=messages, schema=schema, max_tokens=max_tokens, temperature=0.0, top_p=1.0,
                          seed=0)


def verify_verdict(task: Task, ex: Example, reply: str | None) -> str | None:
    """What a blind reply says of an example: None (agrees), the task's reason, or 'verify_failed' when there is no
    readable reply (a math solve may hold LaTeX, so it is read as every reply is, not by json.loads)."""
    parsed = check_reply(reply, task.verify_schema())[0] if reply is not None else None
    return "verify_failed" if parsed is None else task.verify_verdict(parsed, ex)


def max_reply_tokens(schema: dict[str, Any]) -> int:
    """A generous token budget for a reply that follows `schema` (about 2 characters a token at worst, plus slack)."""
    return max_reply_chars(schema) // 2 + 16
