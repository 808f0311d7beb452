"""The filter phase: every pending candidate of a round kept or rejected with its reason, then the next round opened."""

from __future__ import annotations

import random
import time
from collections import Counter
from typing import Any

from engine.augment.requests import verify_request, verify_shots, verify_verdict
from engine.data.example_rows import example_from_row
from engine.filter.filtering import CandidateFilter
from engine.run.context import RunContext
from engine.run.faults import fault_point
from engine.run.meter import PhaseMeter
from engine.store.rows import StoredExample
from models.teacher.base import TeacherRequest


def filter_round(ctx: RunContext, idx: int) -> None:
    """Decide every pending candidate of round `idx` (the checks, the teacher's blind verification, the keep limit),
    and open the next round."""
    rows = ctx.store.examples(ctx.run_id)
    existing = [r for r in rows if r.split != "synthetic" or r.status == "kept"]
    training = [r for r in existing if r.split in ("seed", "synthetic")]
    pending = [r for r in rows if r.split == "synthetic" and r.status == "pending" and r.origin_round == idx]
    verify_stats: dict[str, Any] = {}
    with PhaseMeter() as meter:
        screen = CandidateFilter(ctx.task, ctx.cfg.checks, ctx.cfg.loop.near_duplicate, existing, training)
        verify = None
        if ctx.cfg.checks.verify and ctx.task.verifies:
            verify = lambda survivors: _verify(ctx, idx, survivors, meter, verify_stats)  # noqa: E731
        decisions = screen.decide(pending, verify, seed=ctx.cfg.seed + idx)
        _keep_limit(ctx, idx, decisions)
    reasons = decisions.reasons
    kept = len(decisions.kept)
    mix = Counter(r.answer for r in training) + Counter(r.answer for r in pending if r.id in set(decisions.kept))
    fault_point("filter", idx)
    with ctx.store.transaction():
        for example_id, reason in decisions.rejected.items():
            ctx.store.set_example_status(example_id, "rejected", reason)
        for example_id in decisions.kept:
            ctx.store.set_example_status(example_id, "kept")
        details: dict[str, Any] = {"reasons": dict(reasons), "flags": dict(decisions.flags), **verify_stats}
        if ctx.task.kind in ("classification", "multiple_choice"):
            details["label_mix_after"] = dict(sorted(mix.items()))
        calls = ctx.store.existing_round(ctx.run_id, idx).augment.get("requests") or 0
        details.update(kept_share=round(kept / len(pending), 4) if pending else None,
                       kept_per_call=round(kept / calls, 4) if calls else None)  # calls: the teacher's write calls
        ctx.finish_phase(idx, "filter", meter, "done", kept=kept, rejected=len(decisions.rejected), details=details)
        ctx.store.upsert_round(ctx.run_id, idx + 1, phase="train")
    detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none rejected"
    ctx.log(f"round {idx}: kept {kept} of {len(pending)} new examples ({detail})", kind="phase")


def _keep_limit(ctx: RunContext, idx: int, decisions: Any) -> None:
    """loop.keep_limits: past the round's limit, kept candidates are rejected as over_budget (a seeded draw)."""
    limits = ctx.cfg.loop.keep_limits
    if not limits:
        return
    limit = limits[min(idx, len(limits) - 1)]
    if len(decisions.kept) <= limit:
        return
    keep = set(random.Random(ctx.cfg.seed + idx).sample(decisions.kept, limit))
    for example_id in decisions.kept:
        if example_id not in keep:
            decisions.rejected[example_id] = "over_budget"
    decisions.kept = [i for i in decisions.kept if i in keep]


def _verify(ctx: RunContext, idx: int, rows: list[StoredExample], meter: PhaseMeter, stats: dict[str, Any]) -> dict[int, str | None]:
    """Each candidate answered blind by the teacher (greedy, cached); the task turns disagreement into a reason."""
    identity = ctx.teacher_identity(meter)
    seeds = ctx.store.examples(ctx.run_id, split="seed") if ctx.cfg.checks.verify_shots else []
    shots = verify_shots(ctx.task, [example_from_row(r) for r in seeds], ctx.cfg.checks.verify_shots)
    examples = {row.id: example_from_row(row) for row in rows}
    requests: dict[str, TeacherRequest] = {}
    keys: dict[int, str] = {}
    for row_id, ex in examples.items():
        request = verify_request(ctx.task, ctx.cfg, ex, identity, shots)
        keys[row_id] = request.key
        requests.setdefault(request.key, request)
    t0 = time.perf_counter()
    hits, _ = ctx.call_teacher(idx, "verify", list(requests.values()), meter, "verify")
    verdicts: dict[int, str | None] = {}
    for row_id, ex in examples.items():
        call = ctx.store.teacher_call(keys[row_id])
        reply = call.reply if call is not None else None
        verdicts[row_id] = verify_verdict(ctx.task, ex, reply)
    stats.update(verify_calls=len(requests), verify_cache_hits=hits,
                 verify_seconds=round(time.perf_counter() - t0, 3))
    return verdicts
