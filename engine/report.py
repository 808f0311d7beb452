"""What a run looks like as tables: the round rows shared by the CLI and the app, and their rich rendering."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from engine.runs import effective_status
from engine.status import LIVE
from engine.store import Store, now

PHASE_NAMES = ("train", "eval", "augment", "filter")


def pct(value: float | None) -> str:
    """0.8125 → '81.2'; None → '-'."""
    return "-" if value is None else f"{100 * value:.1f}"


def per_set_deltas(per_set: dict[int, float]) -> str:
    """Paired deltas per seed set, in set order: '+2.0 -1.0 +0.5', or 's0 +2.0  s2 -1.0' when a set is missing."""
    sets = sorted(per_set.items())
    if [s for s, _ in sets] == list(range(len(sets))):
        return " ".join(f"{100 * d:+.1f}" for _, d in sets)
    return "  ".join(f"s{s} {100 * d:+.1f}" for s, d in sets)


def seconds(value: float | None) -> str:
    """Seconds as '12s' / '3m04s'; None → '-'."""
    if value is None:
        return "-"
    value = int(round(value))
    return f"{value}s" if value < 60 else f"{value // 60}m{value % 60:02d}s"


def duration(run: dict[str, Any]) -> float | None:
    """Seconds from creation to end (or to the last update while running)."""
    try:
        start = datetime.fromisoformat(run["created"])
        end = datetime.fromisoformat(run.get("ended") or run["updated"])
    except (TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def round_rows(store: Store, run_id: int) -> list[dict[str, Any]]:
    """One dict per round: sizes, accuracies, kept/rejected, and seconds per phase."""
    rows = []
    for r in store.rounds(run_id):
        phases = r.get("phases") or {}
        rows.append({
            "round": r["idx"], "phase": r["phase"], "train_size": r["train_size"], "misses": r["misses"],
            "generated": r["generated"], "kept": r["kept"], "rejected": r["rejected"],
            "seed_acc": r["seed_acc"], "val_acc": r["val_acc"], "test_acc": r["test_acc"], "train_loss": r["train_loss"],
            "reasons": (phases.get("filter") or {}).get("reasons") or {},
            "flags": (phases.get("filter") or {}).get("flags") or {},
            "failed_reasons": (phases.get("augment") or {}).get("failed_reasons") or {},
            "label_mix": (phases.get("train") or {}).get("label_mix") or {},
            **{f"{p}_s": (phases.get(p) or {}).get("seconds") for p in PHASE_NAMES},
            **{f"{p}_rss_mb": (phases.get(p) or {}).get("peak_rss_mb") for p in PHASE_NAMES},
        })
    return rows


# Terminal widths from which `l2l status` adds columns: the task and start time, then the two models.
WITH_TASK, WITH_MODELS = 110, 160


def rounds_table(store: Store, run_id: int, title: str | None = None, width: int = WITH_TASK) -> Table:
    """The round table of a run; below 110 columns the phases' times fold into one (nothing is cut short)."""
    best = store.run(run_id).get("best_round")
    table = Table(title=title, title_justify="left")
    per_phase = width >= WITH_TASK
    for name in ("round", "train", "misses", "new kept/rej", "seed %", "val %", "test %",
                 *(tuple("teacher" if p == "augment" else p for p in PHASE_NAMES) if per_phase else ("time",))):
        table.add_column(name, justify="right")
    for r in round_rows(store, run_id):
        mark = "*" if r["round"] == best else ""
        new = "-" if r["generated"] is None else f"{r['kept'] if r['kept'] is not None else '?'}/{r['rejected'] if r['rejected'] is not None else '?'}"
        times = [r[f"{p}_s"] for p in PHASE_NAMES]
        total = sum(t for t in times if t is not None) if any(t is not None for t in times) else None
        table.add_row(f"{r['round']}{mark}", str(r["train_size"] or "-"), str(r["misses"] if r["misses"] is not None else "-"),
                      new, pct(r["seed_acc"]), pct(r["val_acc"]), pct(r["test_acc"]),
                      *([seconds(t) for t in times] if per_phase else [seconds(total)]))
    return table


def round_details(store: Store, run_id: int) -> list[Text]:
    """Per round, one line each: rejections by reason, what was counted but kept, and the training set's label mix."""
    lines = []
    for r in round_rows(store, run_id):
        parts = []
        if r["reasons"]:
            parts.append("rejected " + ", ".join(f"{n} {reason}" for reason, n in sorted(r["reasons"].items(), key=lambda kv: -kv[1])))
        if r["failed_reasons"]:
            parts.append("teacher replies unusable: " + ", ".join(
                f"{n} {reason}" for reason, n in sorted(r["failed_reasons"].items(), key=lambda kv: -kv[1])))
        if r["flags"]:
            parts.append("kept but noted " + ", ".join(f"{n} {flag}" for flag, n in sorted(r["flags"].items())))
        if r["label_mix"]:
            parts.append("trained on " + " / ".join(f"{label} {n}" for label, n in r["label_mix"].items()))
        if parts:
            lines.append(Text(f"round {r['round']}: " + "; ".join(parts), style="dim"))
    return lines


def run_summary(store: Store, run_id: int, width: int = 120) -> Group:
    """Header line, round table and best-round line of one run, read from one snapshot of the store."""
    with store.snapshot():
        return _run_summary(store, run_id, width)


def _run_summary(store: Store, run_id: int, width: int) -> Group:
    run = store.run(run_id)
    cfg = run["config"]
    head = Text.assemble((f"run {run_id} ", "bold"), f"{run['name']} · {effective_status(run)} · task {cfg['task'].get('preset') or cfg['task'].get('kind')}"
                         f" · student {cfg['student']['model']} · teacher {cfg['teacher']['model']}")
    parts: list[Any] = [head]
    if run.get("plan"):
        parts.append(Text(f"training: {run['plan']['mode']} on {run['plan']['device']} — {run['plan']['reason']}", style="dim"))
    parts.append(rounds_table(store, run_id, width=width))
    parts.extend(round_details(store, run_id))
    if run.get("best_round") is not None:
        best = store.existing_round(run_id, run["best_round"])
        first = store.existing_round(run_id, 0)
        plain = (f" (round 0 = plain fine-tuning: test {pct(first['test_acc'])}%)" if first["test_acc"] is not None
                 else " (round 0's test score is not taken: loop.score_test_every_round = false)")
        parts.append(Text(f"best round on validation: {best['idx']} · validation {pct(best['val_acc'])}% · "
                          f"test {pct(best['test_acc'])}%{plain}"))
    if run.get("error"):
        parts.append(Text(f"error: {run['error']}", style="red"))
    return Group(*parts)


def runs_table(store: Store, width: int = WITH_MODELS) -> Table:
    """All runs of the store. Narrow terminals get fewer columns (names wrap) instead of every column cut to a few
    characters: id, name, status, rounds, best validation and time always; task and start from 110 columns; the
    models from 160."""
    columns: list[tuple[str, dict[str, Any]]] = [("id", {"justify": "right", "no_wrap": True}),
                                                 ("name", {"overflow": "fold", "ratio": 1}),
                                                 ("status", {"no_wrap": True})]
    if width >= WITH_TASK:
        columns.append(("task", {"no_wrap": True}))
    if width >= WITH_MODELS:
        columns += [("student", {"no_wrap": True}), ("teacher", {"no_wrap": True})]
    columns += [("rounds", {"justify": "right", "no_wrap": True}), ("val %", {"justify": "right", "no_wrap": True})]
    if width >= WITH_TASK:
        columns.append(("started", {"no_wrap": True}))
    columns.append(("took", {"justify": "right", "no_wrap": True}))
    table = Table(title=f"runs in {store.path}", title_justify="left")
    for name, options in columns:
        table.add_column(name, **options)
    for run in store.runs():
        cfg = run["config"]
        status = effective_status(run)
        if status in LIVE:
            run = {**run, "updated": now()}  # a live run's time runs on
        cell = {"id": str(run["id"]), "name": run["name"], "status": str(status),
                "task": cfg["task"].get("preset") or str(cfg["task"].get("kind")), "student": cfg["student"]["model"],
                "teacher": cfg["teacher"]["model"], "rounds": str(run["rounds_done"]), "val %": pct(run["best_val"]),
                "started": run["created"][:16].replace("T", " "), "took": seconds(duration(run))}
        table.add_row(*(cell[name] for name, _ in columns))
    return table


def overhead_rows(store: Store, run_id: int) -> list[dict[str, Any]]:
    """Per finished round: wall seconds, seconds of real work (training, scoring/decoding, teacher decoding) and the rest.

    A round's wall time runs from the end of the previous round's last phase to the end of its own, so
    model loading, freeing, saving, filtering and store writes all land in `overhead_s`.
    """
    rows: list[dict[str, Any]] = []
    previous_end: datetime | None = None
    for r in store.rounds(run_id):
        phases = [p for p in (r.get("phases") or {}).values() if isinstance(p, dict) and p.get("ended")]
        if not phases or r["phase"] != "done":
            break
        ends = [datetime.fromisoformat(p["ended"]) for p in phases]
        if previous_end is None:
            first = min(phases, key=lambda p: p["ended"])
            previous_end = datetime.fromisoformat(first["ended"]) - timedelta(seconds=first.get("wall_seconds") or first["seconds"])
        wall = (max(ends) - previous_end).total_seconds()
        compute = sum(p.get("compute_seconds") or 0.0 for p in phases)
        loads = sum(p.get("load_seconds") or 0.0 for p in phases)
        rows.append({"round": r["idx"], "wall_s": wall, "compute_s": compute, "load_s": loads,
                     "overhead_s": wall - compute, "overhead_share": (wall - compute) / wall if wall > 0 else None})
        previous_end = max(ends)
    return rows
