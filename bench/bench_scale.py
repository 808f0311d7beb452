"""The store at scale: 100,000 examples over 50 rounds (rows inserted directly, with their predictions, teacher calls
and events), then the reads people make while it grows: `l2l status`, `l2l status RUN`, `l2l export RUN` and the
app's examples screen (first page, filter changes, detail, lineage) and dashboard. Bar: each under 1 s on this CPU.

Usage: python bench/bench_scale.py [--examples 100000] [--rounds 50] [--store PATH] [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.config.schema import resolve  # noqa: E402
from engine.store.db import Store, now  # noqa: E402

REASONS = ("label_disagrees", "meta_text", "near_duplicate", "copy_of_seed", "length", "label_balance", "wrong_language")
WORDS = ("a", "film", "that", "never", "quite", "earns", "its", "brilliant", "ending", "but", "the", "cast", "is",
         "warm", "funny", "and", "sharp", "dull", "plot", "twists", "slow", "moving", "score")
BAR_S = 1.0


def _text(rng: random.Random, n: int = 24) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


def build_store(path: Path, n_examples: int = 100_000, n_rounds: int = 50, seed_n: int = 1000, eval_n: int = 500,
                seed: int = 0) -> int:
    """A store holding one finished run of this size (seed, validation and test rows, synthetic rows spread over the
    rounds, a prediction per evaluated row and round, one teacher call per two synthetic rows, an event per row)."""
    rng = random.Random(seed)
    store = Store(path)
    cfg = resolve({"name": "scale", "task": {"preset": "rotten_tomatoes"}, "loop": {"rounds": n_rounds},
                   "data": {"seed": str(ROOT / "tests/fixtures/rotten_tomatoes_20.jsonl")}})
    adapter = path.parent / "runs" / "1" / f"round-{n_rounds - 1}" / "adapter"
    adapter.mkdir(parents=True, exist_ok=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 4096)
    db = store.db
    with store.transaction():
        run_id = store.create_run("scale", cfg.to_json(), cfg.digest(), 0, {}, {}, {"workdir": str(path.parent / "runs" / "1")})
        fixed = [("seed", seed_n), ("validation", eval_n), ("test", eval_n)]
        rows: list[tuple[Any, ...]] = []
        for split, n in fixed:
            for _ in range(n):
                label = rng.choice(("negative", "positive"))
                rows.append((run_id, split, _text(rng), " " + label, label, None, None, None, "kept", None))
        db.conn.executemany("INSERT INTO examples (run_id, split, input, target, answer, origin_round, parent_id, "
                            "teacher_call, status, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        seed_ids = [r[0] for r in db.execute("SELECT id FROM examples WHERE run_id = ? AND split = 'seed'", [run_id])]
        eval_ids = [r[0] for r in db.execute("SELECT id FROM examples WHERE run_id = ? ORDER BY id", [run_id])]
        per_round = max(1, (n_examples - len(rows)) // max(1, n_rounds - 1))
        calls, events, synthetic = [], [], []
        for idx in range(n_rounds - 1):
            misses = rng.sample(seed_ids, min(len(seed_ids), per_round // 2))
            for j in range(per_round):
                parent = misses[j // 2 % len(misses)]
                key = f"{idx}:{parent}:{j // 2}"
                label = rng.choice(("negative", "positive"))
                rejected = rng.random() < 0.4
                text = _text(rng)
                synthetic.append((run_id, "synthetic", text, " " + label, label, idx, parent, key,
                                  "rejected" if rejected else "kept", rng.choice(REASONS) if rejected else None))
                events.append((run_id, now(), "info", "teacher", json.dumps({"text": text, "label": label}),
                               json.dumps({"parent": parent})))
                if j % 2 == 0:
                    calls.append((key, "llama_cpp:x", json.dumps([{"role": "user", "content": _text(rng, 120)}]),
                                  json.dumps({"examples": [{"text": text, "label": label}]}), 1, 400, 120, 3.2, None,
                                  now(), run_id, idx, "write"))
        db.conn.executemany("INSERT INTO examples (run_id, split, input, target, answer, origin_round, parent_id, "
                            "teacher_call, status, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", synthetic)
        db.conn.executemany("INSERT INTO teacher_calls (key, model, prompt, response, ok, tokens_in, tokens_out, seconds, "
                            "error, created, run_id, round, purpose) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", calls)
        db.conn.executemany("INSERT INTO events (run_id, ts, level, kind, message, data) VALUES (?, ?, ?, ?, ?, ?)", events)
        split_of = dict(db.execute("SELECT id, split FROM examples WHERE run_id = ? AND split != 'synthetic'", [run_id]).fetchall())
        for idx in range(n_rounds):
            db.conn.executemany(
                "INSERT INTO predictions (run_id, round, example_id, split, output, extracted, correct, confidence) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, idx, i, split_of[i], " positive", "positive", int(rng.random() < 0.6), rng.random())
                 for i in eval_ids])
            generated = per_round if idx < n_rounds - 1 else None
            kept = int(per_round * 0.6) if generated else None
            phases = {p: {"seconds": rng.random() * 60, "peak_rss_mb": 900.0, "wall_seconds": 61.0}
                      for p in ("train", "eval", "augment", "filter")}
            phases["filter"]["reasons"] = {r: rng.randrange(50) for r in REASONS}
            phases["train"]["label_mix"] = {"negative": 500, "positive": 500}
            store.upsert_round(run_id, idx, phase="done", train_size=seed_n + idx * (kept or 0), seed_acc=rng.random(),
                               val_acc=rng.random(), test_acc=rng.random(), misses=per_round // 2, generated=generated,
                               kept=kept, rejected=None if generated is None else per_round - kept,
                               adapter_path=str(adapter.parent.parent / f"round-{idx}" / "adapter"), train_loss=1.0,
                               phases=phases)
        store.update_run(run_id, status="finished", best_round=n_rounds - 1, ended=now())
    store.close()
    return run_id


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """(first call, median of the calls) in seconds; each call on a fresh connection, as the CLI and the app make."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times[0], statistics.median(times)


def measure(path: Path, run_id: int, repeat: int = 3) -> list[tuple[str, float, float]]:
    """(what, first s, median s) for every read the bar covers."""
    from rich.console import Console

    from engine.export.run_export import export_run
    from engine.reports.run_report import run_summary, runs_table
    from l2l_tui.queries import (
        ExampleFilter,
        dashboard_rounds,
        events_tail,
        example_detail,
        filter_examples,
        filter_options,
        lineage,
        run_list,
    )

    def with_store(read: Callable[[Store], Any]) -> Callable[[], Any]:
        def call() -> Any:
            store = Store(path, create=False)
            try:
                return read(store)
            finally:
                store.close()
        return call

    def render(obj: Any) -> None:
        Console(file=io.StringIO(), width=160).print(obj)

    probe = Store(path, create=False)
    seed_id = probe.db.execute("SELECT parent_id, COUNT(*) FROM examples WHERE run_id = ? AND parent_id IS NOT NULL "
                               "GROUP BY parent_id ORDER BY 2 DESC LIMIT 1", [run_id]).fetchone()[0]
    some_synthetic = probe.db.execute("SELECT MAX(id) FROM examples WHERE run_id = ?", [run_id]).fetchone()[0]
    probe.close()
    scratch = tempfile.TemporaryDirectory(prefix="l2l-scale-export-")
    out_dir = Path(scratch.name)
    cases: list[tuple[str, Callable[[Store], Any]]] = [
        ("l2l status", lambda s: render(runs_table(s))),
        ("l2l status RUN", lambda s: render(run_summary(s, run_id))),
        ("l2l export RUN (data + adapter)", lambda s: export_run(s, run_id, out_dir)),
        ("app: runs screen", lambda s: run_list(s)),
        ("app: dashboard rounds", lambda s: dashboard_rounds(s, run_id)),
        ("app: dashboard events", lambda s: events_tail(s, run_id)),
        ("app: examples filter options", lambda s: filter_options(s, run_id)),
        ("app: examples first page", lambda s: filter_examples(s, run_id, ExampleFilter())),
        ("app: examples filter rejected + reason", lambda s: filter_examples(
            s, run_id, ExampleFilter(status="rejected", reason="label_disagrees"))),
        ("app: examples filter written in round 25", lambda s: filter_examples(s, run_id, ExampleFilter(origin_round=25))),
        ("app: examples filter wrong in round 10", lambda s: filter_examples(
            s, run_id, ExampleFilter(eval_round=10, result="wrong"))),
        ("app: examples text search", lambda s: filter_examples(s, run_id, ExampleFilter(text="brilliant ending"))),
        ("app: example detail", lambda s: example_detail(s, some_synthetic)),
        ("app: lineage of the busiest seed", lambda s: lineage(s, seed_id)),
    ]
    def process(*args: str) -> Callable[[], Any]:
        """The command as the user runs it: a new Python process, imports included."""
        argv = [sys.executable, "-c", "from l2l_tui.cli import main; main()", *args, "--store", str(path)]
        return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)

    commands = [
        ("`l2l status` (new process)", process("status")),
        ("`l2l status RUN` (new process)", process("status", str(run_id))),
        ("`l2l export RUN --only data,adapter` (new process)",
         process("export", str(run_id), "--out", str(out_dir), "--only", "data,adapter")),
    ]
    with scratch:
        return ([(name, *_timed(with_store(read), repeat)) for name, read in cases]
                + [(name, *_timed(call, repeat)) for name, call in commands])


def main(argv: list[str] | None = None) -> int:
    """Build (or reuse) the store, time every read, print a markdown table; exit 1 when a read misses the bar."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--store", type=Path, default=None, help="Build into this path (reused when it exists).")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    path = args.store or Path(tempfile.mkdtemp(prefix="l2l-scale-")) / "l2l.db"
    if path.exists():
        run_id = 1
        print(f"reusing {path}")
    else:
        t0 = time.perf_counter()
        run_id = build_store(path, args.examples, args.rounds)
        print(f"built {path} in {time.perf_counter() - t0:.1f}s ({path.stat().st_size / 2**20:.0f} MB)")
    store = Store(path, create=False)
    counts = {t: store.count(t) for t in ("examples", "rounds", "predictions", "teacher_calls", "events")}
    store.close()
    print("rows: " + ", ".join(f"{n} {t}" for t, n in counts.items()))
    rows = measure(path, run_id, args.repeat)
    print("\n| read | first (s) | median of 3 (s) | under 1 s |\n|---|---|---|---|")
    for name, first, median in rows:
        print(f"| {name} | {first:.3f} | {median:.3f} | {'yes' if max(first, median) < BAR_S else 'NO'} |")
    return 0 if all(max(first, median) < BAR_S for _, first, median in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
