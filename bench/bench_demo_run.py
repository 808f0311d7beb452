"""A real demo run's costs: engine overhead per round (bar < 5%) and the dry-run memory estimate vs measured peak (bar ±25%).

Usage: python bench/bench_demo_run.py [--store S --run N]   (default: run `l2l demo --quick` in a temporary store)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from summary import report  # noqa: E402

from engine.config.schema import RunConfig  # noqa: E402
from engine.reports.run_report import overhead_rows  # noqa: E402
from engine.run.runs import prepare  # noqa: E402
from engine.store.db import Store  # noqa: E402


def quick_demo(store_path: Path) -> int:
    """Run the quick demo through the real worker process; returns the run id."""
    import subprocess

    subprocess.run([sys.executable, "-m", "l2l_tui.cli", "demo", "--quick", "--store", str(store_path)], check=True,
                   cwd=ROOT)
    return max(r.id for r in Store(store_path).runs())


def memory_check(store: Store, run_id: int) -> list[tuple[str, float, float]]:
    """(phase, estimated MB, measured peak MB) for train, evaluate and teacher phases of the run."""
    from engine.tools.dry_run import estimate_memory as estimate_run

    cfg = RunConfig.model_validate(store.run(run_id).config)
    prepared = prepare(cfg)
    est = estimate_run(cfg, [(prepared.task.render_prompt(ex), prepared.task.render_response(ex)) for ex in prepared.splits.seed],
                       [prepared.task.render_prompt(ex) for ex in prepared.splits.validation[:64]])
    measured: dict[str, float] = {}
    for r in store.rounds(run_id):
        for phase, info in r.phases.items():
            if isinstance(info, dict) and info.get("peak_rss_mb"):
                measured[phase] = max(measured.get(phase, 0.0), info["peak_rss_mb"])
    rows = [("train", est.train_mb, measured.get("train", 0.0)), ("eval", est.eval_mb, measured.get("eval", 0.0))]
    if est.teacher_mb is not None:
        rows.append(("augment (teacher)", est.teacher_mb, measured.get("augment", 0.0)))
    rows.append(("run peak", est.peak_mb, max(measured.values(), default=0.0)))
    return rows


def main(argv: list[str]) -> int:
    """Print the overhead table and the memory table; exit 0 (bars are reported, not asserted)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path)
    parser.add_argument("--run", type=int)
    args = parser.parse_args(argv)
    if args.store is None:
        args.store = Path(tempfile.mkdtemp(prefix="l2l-bench-")) / "l2l.db"
        args.run = quick_demo(args.store)
    store = Store(args.store)
    run_id = args.run or max(r.id for r in store.runs())
    print(f"run {run_id} in {args.store}: {store.run(run_id).name}")
    print("\nengine overhead per round (wall − training, scoring and teacher decoding; bar < 5%)")
    print(f"{'round':>5} {'wall s':>8} {'work s':>8} {'loads s':>8} {'overhead s':>10} {'share':>7}")
    for r in overhead_rows(store, run_id):
        print(f"{r['round']:>5} {r['wall_s']:>8.1f} {r['compute_s']:>8.1f} {r['load_s']:>8.1f} {r['overhead_s']:>10.1f} "
              f"{100 * r['overhead_share']:>6.1f}%")
    rows = overhead_rows(store, run_id)
    if rows:
        worst = max(rows, key=lambda r: r["overhead_share"])
        report("engine overhead, worst round of the demo (wall − work)", f"round {worst['round']}: {worst['wall_s']:.0f} s wall",
               f"{worst['overhead_s']:.1f} s overhead ({100 * worst['overhead_share']:.1f}%)", None, "< 5% of the round")
    print("\nmemory: dry-run estimate vs measured peak RSS (bar: within 25%)")
    print(f"{'phase':>18} {'estimate MB':>12} {'measured MB':>12} {'ratio':>7}")
    for phase, est, got in memory_check(store, run_id):
        ratio = est / got if got else float("nan")
        print(f"{phase:>18} {est:>12.0f} {got:>12.0f} {ratio:>7.2f}")
        if phase == "run peak":
            report("dry-run peak-memory estimate vs measured peak RSS of the demo", f"measured {got:.0f} MB",
                   f"estimated {est:.0f} MB", ratio, "0.75–1.25")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
