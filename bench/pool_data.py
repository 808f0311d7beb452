"""Issue 32's sentiment pool: the Rotten Tomatoes train rows of ../shared/data that are not in the demo's data, labels
dropped (bench/out/rt_pool.jsonl), with the dropped labels kept apart (bench/out/rt_pool_labels.jsonl) to score the
teacher's blind labels of pool rows afterwards.

    .venv/bin/python bench/pool_data.py                       # writes the two files
    .venv/bin/python bench/pool_data.py --score STORE          # per run and round: pool rows the teacher labelled,
                                                               # and how often its label was the true one
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.data.dedup import normalise  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SOURCE = REPO.parent / "shared" / "data" / "rotten_tomatoes" / "train.jsonl"
POOL = REPO / "bench" / "out" / "rt_pool.jsonl"
LABELS = REPO / "bench" / "out" / "rt_pool_labels.jsonl"


def write_pool() -> None:
    """The pool and its labels, in source order."""
    demo = resources.files("engine").joinpath("demo_data/sentiment.jsonl").read_text(encoding="utf-8")
    taken = {normalise(json.loads(line)["text"]) for line in demo.split("\n") if line.strip()}
    rows = [json.loads(line) for line in SOURCE.read_text(encoding="utf-8").split("\n") if line.strip()]
    kept = [r for r in rows if normalise(r["text"]) not in taken]
    POOL.parent.mkdir(parents=True, exist_ok=True)
    POOL.write_text("".join(json.dumps({"text": r["text"]}, ensure_ascii=False) + "\n" for r in kept), encoding="utf-8")
    LABELS.write_text("".join(json.dumps({"row": i, "label": r["label"]}) + "\n" for i, r in enumerate(kept)),
                      encoding="utf-8")
    print(f"{len(kept)} pool rows ({len(rows) - len(kept)} of {len(rows)} dropped as demo rows) -> {POOL}")


def score(store_path: Path) -> None:
    """Per run and round: the teacher's blind label of each pool row proposed (kept = it agreed with the miss's label)
    against the row's true label."""
    from engine.store.db import Store

    truth = {int(r["row"]): r["label"] for r in map(json.loads, LABELS.read_text(encoding="utf-8").splitlines())}
    store = Store(store_path, create=False)
    for run in store.runs():
        rows = [e for e in store.examples(run.id, split="synthetic") if (e.meta or {}).get("origin") == "pool"]
        by_round: dict[int, Counter[str]] = {}
        for e in rows:
            # only rows that reached the blind verification were labelled by the teacher (dedup and the cheap checks
            # come first; the label cap and the keep limit after it)
            if e.status != "kept" and e.reason not in ("label_disagrees", "label_balance", "over_budget"):
                continue
            c = by_round.setdefault(int(e.origin_round), Counter())
            true = truth[int(e.meta["pool_row"])]
            agreed = e.reason != "label_disagrees"  # the teacher gave the miss's label
            c["proposed"] += 1
            c["teacher_right"] += int((e.answer == true) == agreed)
            c["kept"] += e.status == "kept"
            c["kept_right"] += e.status == "kept" and e.answer == true
        for idx, c in sorted(by_round.items()):
            print(f"run {run.id} ({run.name}) round {idx}: {c['proposed']} labelled blind, the teacher's label right "
                  f"{c['teacher_right']}/{c['proposed']}, kept {c['kept']} of which {c['kept_right']} truly that label")


def main() -> None:
    """Write the pool, or score a store's pool rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--score", type=Path, help="a store whose pool rows to score")
    args = parser.parse_args()
    if args.score:
        score(args.score)
    else:
        write_pool()


if __name__ == "__main__":
    main()
