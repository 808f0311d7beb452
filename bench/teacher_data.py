"""What the teacher actually wrote in a sweep, per arm: kept examples, how many still talk about an example instead of
being one (the meta-text patterns), how many carry another label than the miss they were written for, the label mix
kept, rejections by reason, and a few kept and rejected examples quoted.

    python bench/teacher_data.py --store bench/out/sweeps.db --sweep 1 [--quote 5]
"""

from __future__ import annotations

import argparse
import random
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.config.schema import RunConfig  # noqa: E402
from engine.filter.checks import MetaText  # noqa: E402
from engine.store.db import Store  # noqa: E402
from engine.tasks.registry import make_task  # noqa: E402


def arm_stats(store: Store, run_ids: list[int]) -> dict[str, object]:
    """Counts over the runs of one arm."""
    kept: list[dict] = []
    rejected: list[dict] = []
    meta = None
    for run_id in run_ids:
        cfg = RunConfig.model_validate(store.run(run_id).config)
        task = make_task(cfg.task)
        meta = meta or MetaText(task)
        by_id = {e.id: e for e in store.examples(run_id)}
        for ex in by_id.values():
            if ex.split != "synthetic":
                continue
            parent = by_id.get(ex.parent_id) if ex.parent_id is not None else None
            row = {**asdict(ex), "parent_answer": parent.answer if parent else None}
            (kept if ex.status == "kept" else rejected).append(row)
    assert meta is not None
    labels = Counter(r["answer"] for r in kept)
    marks = ",".join("?" * len(run_ids))
    seconds = dict(store.db.execute(  # teacher time by purpose, over the calls these runs made themselves
        f"SELECT purpose, SUM(seconds) FROM teacher_calls WHERE run_id IN ({marks}) GROUP BY purpose", run_ids).fetchall())
    return {
        "kept": len(kept), "rejected": len(rejected),
        "meta_kept": sum(1 for r in kept if meta.match(r["input"])),
        "other_label_kept": sum(1 for r in kept if r["parent_answer"] is not None and r["answer"] != r["parent_answer"]),
        "labels": dict(labels.most_common()), "reasons": dict(Counter(r["reason"] for r in rejected).most_common()),
        "kept_rows": kept, "rejected_rows": rejected, "teacher_seconds": seconds,
    }


def main() -> None:
    """Print the per-arm table and the quotes."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--store", type=Path, required=True)
    parser.add_argument("--sweep", type=int, required=True)
    parser.add_argument("--quote", type=int, default=5)
    parser.add_argument("--arms", default=None, help="comma-separated arms (default: all)")
    args = parser.parse_args()
    store = Store(args.store, create=False)
    cells = store.sweep_runs(args.sweep)
    arms = [a["name"] for a in store.sweep(args.sweep).arms]
    if args.arms:
        arms = [a for a in arms if a in args.arms.split(",")]
    rng = random.Random(0)
    for arm in arms:
        runs = [c.run_id for c in cells if c.arm == arm]
        if not runs:
            continue
        s = arm_stats(store, runs)
        kept_rows, rejected_rows = s["kept_rows"], s["rejected_rows"]
        assert isinstance(kept_rows, list) and isinstance(rejected_rows, list)
        share = max(1, len(kept_rows))
        print(f"## {arm} ({len(runs)} runs): {len(kept_rows)} kept, {len(rejected_rows)} rejected")
        print(f"   meta-text kept: {s['meta_kept']} ({100 * float(str(s['meta_kept'])) / share:.0f}%); other label than "
              f"the miss kept: {s['other_label_kept']} ({100 * float(str(s['other_label_kept'])) / share:.0f}%)")
        print(f"   kept labels: {s['labels']}")
        print(f"   rejected by reason: {s['reasons']}")
        secs = s["teacher_seconds"]
        assert isinstance(secs, dict)
        if secs.get("verify"):
            write = float(secs.get("write") or 0.0)
            print(f"   teacher seconds: write {write:.0f}, verify {secs['verify']:.0f} "
                  f"(+{100 * secs['verify'] / max(write, 1e-9):.0f}% on the augment phase's teacher time)")
        for name in ("kept_rows", "rejected_rows"):
            rows = s[name]
            assert isinstance(rows, list)
            for row in rng.sample(rows, min(args.quote, len(rows))):
                why = "" if row["status"] == "kept" else f" [{row['reason']}]"
                print(f"   {name.split('_')[0]:>8}{why} ({row['answer']}, for a {row['parent_answer']} miss): {row['input'][:200]!r}")


if __name__ == "__main__":
    main()
