"""What a run looks like as tables: the round rows shared by the CLI and the app, and their rich rendering."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from rich.cells import cell_len
from rich.console import Group, JustifyMethod
from rich.table import Table
from rich.text import Text

from engine.run.runs import effective_status
from engine.store.db import Store, now
from engine.store.rows import Run
from engine.store.status import LIVE

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


def duration(run: Run) -> float | None:
    """Seconds from creation to end (or to the last update while running)."""
    try:
        start = datetime.fromisoformat(run.created)
        end = datetime.fromisoformat(run.ended or run.updated or "")
    except (TypeError, ValueError):
        return None
    return (end - start).total_seconds()


def round_rows(store: Store, run_id: int) -> list[dict[str, Any]]:
    """One dict per round: sizes, accuracies, kept/rejected, and seconds per phase."""
    rows = []
    for r in store.rounds(run_id):
        rows.append({
            "round": r.idx, "phase": r.phase, "train_size": r.train_size, "misses": r.misses,
            "generated": r.generated, "kept": r.kept, "rejected": r.rejected,
            "seed_acc": r.seed_acc, "val_acc": r.val_acc, "test_acc": r.test_acc, "train_loss": r.train_loss,
            "reasons": r.filter.get("reasons") or {},
            "flags": r.filter.get("flags") or {},
            "failed_reasons": r.augment.get("failed_reasons") or {},
            "label_mix": r.train.get("label_mix") or {},
            **{f"{p}_s": r.record(p).get("seconds") for p in PHASE_NAMES},
            **{f"{p}_rss_mb": r.record(p).get("peak_rss_mb") for p in PHASE_NAMES},
        })
    return rows


# Terminal widths from which `l2l status` adds columns: the task and start time, then the two models.
WITH_TASK, WITH_MODELS = 110, 160


def _table_room(columns: int, width: int) -> int:
    """Characters left for cell text once a default rich box draws `columns` columns in `width`."""
    return width - (3 * columns + 1)  # a border and one space of padding either side of each column, the left edge


def _natural(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """Each column's width with no header or cell wrapped."""
    return [max([cell_len(h), *(cell_len(r[i]) for r in rows)]) for i, h in enumerate(headers)]


def _lines(text: str, width: int) -> int:
    """Lines that `text` takes wrapped at spaces in `width` characters, as rich wraps it (no word is wider)."""
    lines, used = 1, 0
    for word in text.split():
        if used and used + 1 + cell_len(word) > width:
            lines, used = lines + 1, cell_len(word)
        else:
            used += (1 if used else 0) + cell_len(word)
    return lines


def _fit_widths(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int) -> list[int] | None:
    """Text widths of the columns in a table of `width` characters: each column's natural width when they all fit;
    else headers wrapped at spaces, then cells too (no word or number is ever cut), the spare room going to the
    columns that wrap onto the most lines; None when even that is too wide."""
    room = _table_room(len(headers), width)
    natural = _natural(headers, rows)
    if sum(natural) <= room:
        return natural
    words = [max(cell_len(word) for word in [*h.split(), ""]) for h in headers]
    whole_cells = [max(words[i], *(cell_len(r[i]) for r in rows)) for i in range(len(headers))]
    cell_words = [max(words[i], *(cell_len(word) for r in rows for word in [*r[i].split(), ""])) for i in range(len(headers))]
    widths = next((list(w) for w in (whole_cells, cell_words) if sum(w) <= room), None)
    if widths is None:
        return None

    def height(i: int, w: int) -> int:
        return _lines(headers[i], w) + sum(_lines(r[i], w) - 1 for r in rows)

    while True:
        # widen the column on the most lines by the fewest characters that save it one, while the room lasts
        spare, pick = room - sum(widths), None
        for i, w in enumerate(widths):
            lines = height(i, w)
            wider = next((v for v in range(w + 1, min(natural[i], w + spare) + 1) if height(i, v) < lines), None)
            if wider is not None and (pick is None or (lines, w - wider) > pick[:2]):
                pick = (lines, w - wider, i)
        if pick is None:
            return widths
        widths[pick[2]] -= pick[1]


def left_then_right(columns: int) -> list[JustifyMethod]:
    """A text column then `columns` - 1 number columns."""
    return ["left", *(["right"] * (columns - 1))]  # type: ignore[list-item]


def fitted_table(headers: Sequence[str], rows: Sequence[Sequence[str]], width: int, justify: Sequence[JustifyMethod],
                 title: str | None = None, drop: Sequence[str] = ()) -> Table:
    """A table that shows every cell whole in `width` characters (as when stdout is a pipe or a file: 80): headers
    wrap at spaces first, then the columns named in `drop` go, in that order, until it fits."""
    keep = list(range(len(headers)))
    widths = _fit_widths(headers, rows, width)
    for name in drop:
        if widths is not None:
            break
        keep.remove(list(headers).index(name))
        widths = _fit_widths([headers[i] for i in keep], [[r[i] for i in keep] for r in rows], width)
    table = Table(title=title, title_justify="left")
    for j, i in enumerate(keep):
        # with no widths that fit (a very narrow terminal), rich squeezes the columns itself
        table.add_column(headers[i], justify=justify[i], width=widths[j] if widths is not None else None)
    for r in rows:
        table.add_row(*(r[i] for i in keep))
    return table


def rounds_table(store: Store, run_id: int, title: str | None = None, width: int = WITH_TASK) -> Table:
    """The round table of a run in `width` characters: the phases' times each get a column when they fit without
    wrapping a header (about 100), else they fold into one 'time' column; no number is ever cut short."""
    best = store.run(run_id).best_round
    head = ["round", "train", "misses", "new kept/rej", "seed %", "val %", "test %"]
    per_phase, folded = [], []
    for r in round_rows(store, run_id):
        mark = "*" if r["round"] == best else ""
        new = "-" if r["generated"] is None else f"{r['kept'] if r['kept'] is not None else '?'}/{r['rejected'] if r['rejected'] is not None else '?'}"
        times = [r[f"{p}_s"] for p in PHASE_NAMES]
        total = sum(t for t in times if t is not None) if any(t is not None for t in times) else None
        cells = [f"{r['round']}{mark}", str(r["train_size"] or "-"), str(r["misses"] if r["misses"] is not None else "-"),
                 new, pct(r["seed_acc"]), pct(r["val_acc"]), pct(r["test_acc"])]
        per_phase.append([*cells, *(seconds(t) for t in times)])
        folded.append([*cells, seconds(total)])
    phase_head = [*head, *("teacher" if p == "augment" else p for p in PHASE_NAMES)]
    if sum(_natural(phase_head, per_phase)) <= _table_room(len(phase_head), width):
        return fitted_table(phase_head, per_phase, width, ["right"] * len(phase_head), title)
    # narrower than about 60 characters: the seed score goes first (the set trained on), the time last
    return fitted_table([*head, "time"], folded, width, ["right"] * (len(head) + 1), title,
                        drop=("seed %", "misses", "train", "time"))


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


# who made a new example (examples.meta.origin; none: the teacher wrote it), as `l2l status` counts them: one, many
MADE_BY = {"teacher": ("written by the teacher", "written by the teacher"), "pool": ("real pool row", "real pool rows"),
           "eda": ("eda edit", "eda edits"), "oracle": ("oracle row", "oracle rows")}


def origin_lines(store: Store, run_id: int) -> list[Text]:
    """'kept: 12 written by the teacher, 5 real pool rows' (and the rejected alike), where some new examples are not
    the teacher's (pool, eda, oracle rows); none otherwise, as the round table already counts them."""
    counts = store.decided_origin_counts(run_id)
    if all(origin == "teacher" for by in counts.values() for origin in by):
        return []
    lines = []
    for status in ("kept", "rejected"):
        by = counts.get(status) or {}
        order = [o for o in MADE_BY if o in by] + sorted(o for o in by if o not in MADE_BY)
        parts = [f"{by[o]} {MADE_BY.get(o, (o, o))[by[o] != 1]}" for o in order]
        if parts:
            lines.append(Text(f"{status}: {', '.join(parts)}"))
    return lines


def run_summary(store: Store, run_id: int, width: int = 120) -> Group:
    """Header line, round table and best-round line of one run, read from one snapshot of the store."""
    with store.snapshot():
        return _run_summary(store, run_id, width)


def _run_summary(store: Store, run_id: int, width: int) -> Group:
    run = store.run(run_id)
    cfg = run.config
    head = Text.assemble((f"run {run_id} ", "bold"), f"{run.name} · {effective_status(run)} · task {run.task_name}"
                         f" · student {cfg['student']['model']} · teacher {cfg['teacher']['model']}")
    parts: list[Any] = [head]
    if run.plan:
        parts.append(Text(f"training: {run.plan['mode']} on {run.plan['device']} — {run.plan['reason']}", style="dim"))
    parts.append(rounds_table(store, run_id, width=width))
    parts.extend(round_details(store, run_id))
    parts.extend(origin_lines(store, run_id))
    if run.best_round is not None:
        best = store.existing_round(run_id, run.best_round)
        first = store.existing_round(run_id, 0)
        plain = (f" (round 0 = plain fine-tuning: test {pct(first.test_acc)}%)" if first.test_acc is not None
                 else " (round 0's test score is not taken: loop.score_test_every_round = false)")
        parts.append(Text(f"best round on validation: {best.idx} · validation {pct(best.val_acc)}% · "
                          f"test {pct(best.test_acc)}%{plain}"))
    if run.error:
        parts.append(Text(f"error: {run.error}", style="red"))
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
    for listing in store.run_listings():
        run = listing.run
        cfg = run.config
        status = effective_status(run)
        if status in LIVE:
            run = replace(run, updated=now())  # a live run's time runs on
        cell = {"id": str(run.id), "name": run.name, "status": str(status), "task": run.task_name,
                "student": cfg["student"]["model"],
                "teacher": cfg["teacher"]["model"], "rounds": str(listing.rounds_done), "val %": pct(listing.best_val),
                "started": run.created[:16].replace("T", " "), "took": seconds(duration(run))}
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
        phases = [p for p in map(r.record, PHASE_NAMES) if p.get("ended")]
        if not phases or r.phase != "done":
            break
        ends = [datetime.fromisoformat(p["ended"]) for p in phases]
        if previous_end is None:
            first = min(phases, key=lambda p: p["ended"])
            previous_end = datetime.fromisoformat(first["ended"]) - timedelta(seconds=first.get("wall_seconds") or first["seconds"])
        wall = (max(ends) - previous_end).total_seconds()
        compute = sum(p.get("compute_seconds") or 0.0 for p in phases)
        loads = sum(p.get("load_seconds") or 0.0 for p in phases)
        rows.append({"round": r.idx, "wall_s": wall, "compute_s": compute, "load_s": loads,
                     "overhead_s": wall - compute, "overhead_share": (wall - compute) / wall if wall > 0 else None})
        previous_end = max(ends)
    return rows
