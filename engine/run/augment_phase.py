"""The augment phase: new candidate examples for a round's targets, written by the teacher or drawn from another
source (eda, oracle, the unlabeled pool), stored as pending for the filter."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from engine.augment.requests import (
    choose_targets,
    copies_its_seed,
    earlier_candidates,
    grounding,
    hot_request,
    read_write_call,
    verify_request,
    verify_shots,
    write_request,
)
from engine.data.example_rows import example_from_row, example_row
from engine.run.context import RunContext
from engine.run.faults import fault_point
from engine.run.meter import PhaseMeter
from engine.run.scoring import is_miss
from engine.store.rows import StoredExample
from models.teacher.base import TeacherRequest


def targets_noun(targets: str) -> str:
    """What loop.targets picks, as a noun for the log."""
    return {"misses": "misses", "random": "randomly drawn seed examples", "all": "seed examples"}[targets]


def augment(ctx: RunContext, idx: int) -> None:
    """Ask the teacher (or another source) for new examples from this round's targets and store them as pending."""
    from models.teacher.base import failure_reason

    preds = {p.example_id: p for p in ctx.store.predictions(ctx.run_id, idx)}
    seeds = ctx.store.examples(ctx.run_id, split="seed")
    pool = ctx.training_examples(idx) if ctx.cfg.loop.miss_source == "all" else seeds
    pool = [r for r in pool if r.id in preds]
    misses = [r for r in pool if is_miss(preds[r.id], ctx.cfg.loop.confidence_threshold)]
    targets = choose_targets(ctx.cfg, pool, misses, idx, preds)
    if ctx.cfg.loop.source != "teacher":
        _augment_without_teacher(ctx, idx, targets, seeds)
        return
    requests: list[TeacherRequest] = []
    parents: dict[str, StoredExample] = {}
    shown_earlier = ctx.cfg.augment.show_earlier
    earlier = earlier_candidates(ctx.store.examples(ctx.run_id, split="synthetic"), idx, shown_earlier) if shown_earlier else {}
    with PhaseMeter() as meter:
        identity = ctx.teacher_identity(meter)
        for target in targets:
            shown = grounding(ctx.task, target.row, seeds, ctx.cfg.checks.grounding)
            request = write_request(ctx.task, ctx.cfg, identity, idx, target, [example_from_row(r) for r in shown],
                                    earlier.get(target.row.id, []))
            parents[request.key] = target.row
            requests.append(request)
        asked = sum(t.k for t in targets)
        cached = sum(1 for r in requests if ctx.store.teacher_call(r.key) is not None)
        ctx.log(f"round {idx}: asking the teacher for {asked} examples from {len(targets)} "
                 f"{targets_noun(ctx.cfg.loop.targets)}; {cached} calls answered from the cache", kind="phase")

        def echo(key: str, parsed: dict[str, Any]) -> None:
            for item in parsed.get("examples", []):
                ctx.log(json.dumps(item, ensure_ascii=False)[:500], kind="teacher", parent=parents[key].id)

        hits, fresh = ctx.call_teacher(idx, "augment", requests, meter, "write", on_parsed=echo)

        def read(request: TeacherRequest) -> tuple[list[Any], str | None]:
            return read_write_call(ctx.task, ctx.store.teacher_call(request.key), request.schema, parents[request.key])

        def all_copies(request: TeacherRequest) -> bool:
            texts = [ex.input for ex in written[request.key][0]]
            return copies_its_seed(parents[request.key].input, texts, ctx.cfg.loop.near_duplicate)

        written = {r.key: read(r) for r in requests}
        copied = [r for r in requests if all_copies(r)]
        hot = [hot_request(ctx.cfg, identity, r) for r in copied] if ctx.cfg.augment.hot_retry else []
        if hot:  # each all-copy call once more, hotter; its copies stay candidates (the filter rejects and counts them)
            parents.update({h.key: parents[r.key] for h, r in zip(hot, copied, strict=True)})
            hot_hits, hot_fresh = ctx.call_teacher(idx, "augment", hot, meter, "write", on_parsed=echo)
            hits, fresh = hits + hot_hits, fresh | hot_fresh
            written.update({h.key: read(h) for h in hot})
        hot_copied = sum(all_copies(h) for h in hot)
    candidates: list[dict[str, Any]] = []
    failed = tokens_out = 0
    failed_reasons: Counter[str] = Counter()
    gen_seconds = 0.0
    for request in [*requests, *hot]:
        examples, error = written[request.key]
        if error is not None:
            failed += 1
            failed_reasons[failure_reason(error)] += 1
            continue
        call = ctx.store.teacher_call(request.key)
        assert call is not None
        if request.key in fresh:
            tokens_out += call.tokens_out or 0
            gen_seconds += call.seconds or 0.0
        parent = parents[request.key]
        for ex in examples:
            candidates.append(example_row(ctx.run_id, "synthetic", ex, status="pending", origin_round=idx,
                                          parent_id=parent.id, teacher_call=request.key))
    fault_point("augment", idx)
    with ctx.store.transaction():
        ctx.store.insert_examples(candidates)
        ctx.finish_phase(idx, "augment", meter, "filter", generated=len(candidates),
                           details={"requests": len(requests) + len(hot), "examples_requested": asked, "cache_hits": hits,
                                    "failed_calls": failed, "failed_reasons": dict(failed_reasons),
                                    "tokens_out": tokens_out,
                                    "tokens_per_s": round(tokens_out / gen_seconds, 2) if gen_seconds else None,
                                    "targets": ctx.cfg.loop.targets, "target_misses": sum(t.is_miss for t in targets),
                                    # calls (before any hot retry) whose candidates all copy their example
                                    "copy_calls": len(copied),
                                    "copy_call_share": round(len(copied) / len(requests), 4) if requests else None,
                                    "hot_retries": len(hot), "hot_copy_calls": hot_copied,
                                    "hot_temperature": hot[0].temperature if hot else None})
    copies = f", {len(copied)} all copies of their example" if copied else ""
    if hot:
        copies += f", {len(hot)} asked again hotter ({hot_copied} copied again)"
    ctx.log(f"round {idx}: teacher wrote {len(candidates)} candidates ({failed} calls unusable{copies}, "
             f"{meter.seconds:.1f}s)", kind="phase")


def _augment_without_teacher(ctx: RunContext, idx: int, targets: list[Any], seeds: list[StoredExample]) -> None:
    """loop.source = eda (edits of each target), oracle (unused labelled rows nearest it) or pool (unlabeled rows
    nearest it, each verified blind by the teacher in the filter phase: its call is the row's teacher_call)."""
    from engine.augment.sources import eda_candidates, oracle_candidates, pool_candidates

    source = ctx.cfg.loop.source
    asked = sum(t.k for t in targets)
    details: dict[str, Any] = {}
    with PhaseMeter() as meter:
        if source == "eda":
            made = eda_candidates(ctx.cfg, idx, targets, seeds)
        elif source == "oracle":
            made = oracle_candidates(ctx.cfg, ctx.task, idx, targets, [r.input for r in ctx.store.examples(ctx.run_id)])
        else:
            pool, index = _unlabeled(ctx)
            taken = {int(r.meta["pool_row"]) for r in ctx.store.examples(ctx.run_id, split="synthetic")
                     if r.meta and r.meta.get("origin") == "pool"}
            made, asked = pool_candidates(ctx.cfg, idx, targets, pool.texts, pool.rows, taken, str(pool.path), index)
            if len(made) < asked:
                ctx.log(f"round {idx}: the unlabeled pool had {len(made)} unused rows for {asked} asked; using what "
                         "there is", kind="phase", level="warning")
            details = {"pool_rows": len(pool.texts), "pool_taken_before": len(taken)}
        identity = ctx.teacher_identity(meter) if source == "pool" else None
        shots = verify_shots(ctx.task, [example_from_row(r) for r in seeds], ctx.cfg.checks.verify_shots)
        candidates = [example_row(ctx.run_id, "synthetic", c.example, status="pending", origin_round=idx,
                                  parent_id=c.parent.id,
                                  teacher_call=verify_request(ctx.task, ctx.cfg, c.example, identity, shots).key
                                  if identity is not None else None)
                      for c in made]
    fault_point("augment", idx)
    with ctx.store.transaction():
        ctx.store.insert_examples(candidates)
        ctx.finish_phase(idx, "augment", meter, "filter", generated=len(candidates),
                           details={"source": source, "requests": 0, "examples_requested": asked, **details,
                                    "targets": ctx.cfg.loop.targets, "target_misses": sum(t.is_miss for t in targets)})
    ctx.log(f"round {idx}: {source} gave {len(candidates)} candidates for {len(targets)} "
             f"{targets_noun(ctx.cfg.loop.targets)} ({meter.seconds:.1f}s)", kind="phase")


def _unlabeled(ctx: RunContext) -> tuple[Any, Any]:
    """The run's unlabeled pool (data.unlabeled) minus its own texts, and its BM25 index: read and indexed once per
    process (seconds for 100k rows), then every round only queries it."""
    if ctx.unlabeled_cache is None:
        from engine.augment.unlabeled import load_unlabeled
        from engine.data.retrieval import BM25

        rows = ctx.store.examples(ctx.run_id)
        pool = load_unlabeled(ctx.cfg, ctx.task, [r.input for r in rows if r.split != "synthetic"],
                              [r.input for r in rows if r.split == "seed"])
        for note in pool.notes:
            ctx.log(note, kind="info", level="warning")
        ctx.unlabeled_cache = (pool, BM25(pool.texts))
    return ctx.unlabeled_cache
