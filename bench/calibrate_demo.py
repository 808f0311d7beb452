"""Calibrate the demo: run candidate settings over several seed sets, report plain FT vs LLM2LLM on test.

Usage: python bench/calibrate_demo.py SETTING [SETTING ...] [--sets 0,1,2] [--out bench/out]
Each setting is a named list of overrides on top of `engine/presets/demo.toml`; each seed set is a
different `data.split_seed` (seed, validation and test rows all redrawn) and run seed. Every run lands
in `OUT/calibration-SETTING.db`, so `l2l --store` shows it, and a run already finished there is reused.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.experiments.demo import demo_config  # noqa: E402
from engine.reports.compare import paired_delta  # noqa: E402
from engine.reports.run_report import duration  # noqa: E402
from engine.run.loop import Loop  # noqa: E402
from engine.run.runs import create_run, prepare  # noqa: E402
from engine.store.db import Store  # noqa: E402

# Everything a setting depends on is spelled out, so that changing demo.toml does not change what was measured.
COMMON = ["student.model=smollm2-135m-instruct", "student.max_length=256", "train.batch_size=8", "train.learning_rate=3e-4",
          "eval.batch_size=32", "teacher.model=qwen2.5-coder-1.5b-instruct", "teacher.parallel=8",
          "teacher.max_tokens=512", "teacher.temperature=0.7"]
SENTIMENT = COMMON + ["task.preset=rotten_tomatoes", "data.pool=demo_data/sentiment.jsonl", "data.input_field=text",
                      "data.target_field=label", "eval.max_new_tokens=8"]
MAWPS = COMMON + ["task.preset=mawps", "data.pool=demo_data/mawps.jsonl", "data.input_field=input",
                  "data.target_field=target", "eval.max_new_tokens=48"]

SETTINGS: dict[str, list[str]] = {
    # the first demo: MAWPS word problems, number-only seed targets (at quick size to fit the budget)
    "mawps-16-k2-e3": MAWPS + ["data.seed_size=16", "data.validation_size=40", "data.test_size=100", "train.epochs=3",
                               "loop.examples_per_miss=2", "loop.rounds=2"],
    # calibration.md's levers on sentiment: few updates leave misses, k new examples each, low confidence counts
    "sent-32-k3-e1-c80": SENTIMENT + ["data.seed_size=32", "data.validation_size=100", "data.test_size=300",
                                      "train.epochs=1", "loop.examples_per_miss=3", "loop.confidence_threshold=0.8",
                                      "loop.rounds=3"],
    # control: plain fine-tuning only, with about as many optimizer steps as LLM2LLM's last round takes above
    "sent-32-plain-e3": SENTIMENT + ["data.seed_size=32", "data.validation_size=100", "data.test_size=300",
                                     "train.epochs=3", "loop.rounds=1"],
    "sent-16-k4-e2-c80": SENTIMENT + ["data.seed_size=16", "data.validation_size=100", "data.test_size=300",
                                      "train.epochs=2", "loop.examples_per_miss=4", "loop.confidence_threshold=0.8",
                                      "loop.rounds=3"],
}


def run_one(store_path: Path, overrides: list[str], seed_set: int) -> tuple[Store, int]:
    """Run (or reuse a finished) seed set of a setting; returns the store and run id."""
    name = f"calibration set {seed_set}"
    cfg = demo_config(store_path, overrides + [f"data.split_seed={seed_set}", f"seed={seed_set}", f"name={name!r}"])
    store = Store(store_path)
    for run in store.runs():
        if run.name == name and run.status == "finished":
            return store, run.id
    run_id = create_run(store, prepare(cfg))
    status = Loop(store, run_id, on_log=lambda line, kind: print("   ", line, flush=True)).run()
    if status != "finished":
        raise SystemExit(f"run {run_id} in {store_path} ended {status}")
    return store, run_id


def mean_sd(values: list[float]) -> str:
    """'81.2 ± 1.3' in percent (sample standard deviation)."""
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * statistics.mean(values):.1f} ± {100 * sd:.1f}"


def main(argv: list[str]) -> int:
    """Run the named settings over the seed sets and print one markdown table row per setting."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", choices=sorted(SETTINGS))
    parser.add_argument("--sets", default="0,1,2", help="comma-separated seed sets (split seeds)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "out")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    sets = [int(s) for s in args.sets.split(",")]
    rows = []
    for name in args.settings:
        base, best, last, deltas, walls, kept, per_set = [], [], [], [], [], [], []
        for seed_set in sets:
            print(f"== {name} · seed set {seed_set}", flush=True)
            store, run_id = run_one(args.out / f"calibration-{name}.db", SETTINGS[name], seed_set)
            run, rounds = store.run(run_id), store.rounds(run_id)
            chosen = run.best_round or 0
            base.append(rounds[0].test_acc or 0.0)
            best.append(store.existing_round(run_id, chosen).test_acc or 0.0)
            last.append(rounds[-1].test_acc or 0.0)
            delta = paired_delta(store, run_id, 0, chosen)
            deltas.append(delta.delta if delta else 0.0)
            walls.append(wall := duration(run) or 0.0)
            kept.append(store.count("examples", run_id=run_id, split="synthetic", status="kept"))
            per_set.append(f"set {seed_set}: round 0 {100 * base[-1]:.1f} → round {chosen} {100 * best[-1]:.1f}"
                           + (f" ({delta.describe()})" if delta and chosen else " (validation kept round 0)")
                           + f", misses per round {[r.misses for r in rounds]}, kept {kept[-1]}, {wall / 60:.1f} min")
        rows.append((name, mean_sd(base), mean_sd(best), mean_sd(last), f"{100 * statistics.mean(deltas):+.1f}",
                     f"{statistics.mean(kept):.0f}", f"{statistics.mean(walls) / 60:.1f}", per_set))
    print("\n| setting | plain FT test % | LLM2LLM test % (round chosen on val) | last round test % | mean paired Δ (pt) "
          "| teacher examples kept | minutes per run |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row[:-1]) + " |")
    for row in rows:
        print(f"\n{row[0]}:\n" + "\n".join(f"- {line}" for line in row[-1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
