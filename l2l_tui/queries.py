"""Read-only views of the store shaped for the app: run list, event tails, filtered examples, lineage."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.report import duration
from engine.runs import effective_status
from engine.store import Store, now
from engine.worker import worker_log

LIVE_STATUSES = ("running", "stopping")
EXAMPLE_LIMIT = 2000


def open_store(path: Path) -> Store:
    """A fresh connection to the store (one per thread: workers never share the UI's)."""
    return Store(path, create=True)


def run_list(store: Store) -> list[dict[str, Any]]:
    """Every run as the runs screen shows it: effective status, task, models, rounds, best validation, timing."""
    out = []
    for run in store.runs():
        cfg = run["config"]
        status = effective_status(run)
        live = {**run, "updated": now()} if status in LIVE_STATUSES else run
        out.append({
            "id": run["id"], "name": run["name"], "status": status,
            "task": cfg["task"].get("preset") or str(cfg["task"].get("kind")),
            "student": cfg["student"]["model"], "teacher": cfg["teacher"]["model"],
            "rounds_done": run["rounds_done"], "rounds_max": cfg["loop"]["rounds"], "best_val": run["best_val"],
            "created": run["created"], "duration": duration(live), "pid": run.get("pid"),
        })
    return out


def log_tail(store_path: Path, run_id: int, lines: int = 20) -> list[str]:
    """The last lines of the run's detached worker log (empty when there is none)."""
    path = worker_log(store_path, run_id)
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - 16384))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    # a terminal shows only what follows the last carriage return of a line (progress bars redraw with \r)
    shown = [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]
    return [line for line in shown if line.strip()][-lines:]


def events_tail(store: Store, run_id: int, limit: int = 300) -> list[dict[str, Any]]:
    """The last `limit` events of a run, oldest first."""
    rows = store.db.query("SELECT * FROM events WHERE run_id = ? ORDER BY id DESC LIMIT ?", [run_id, limit])
    return list(reversed(list(rows)))


@dataclass(frozen=True)
class ExampleFilter:
    """What the example browser shows; None means any."""

    split: str | None = None
    origin_round: int | None = None
    eval_round: int | None = None
    result: str | None = None  # 'correct' / 'wrong' in eval_round (latest evaluated round when unset)
    status: str | None = None
    reason: str | None = None
    text: str | None = None


def evaluated_rounds(store: Store, run_id: int) -> list[int]:
    """Rounds that have predictions, in order."""
    rows = store.db.execute("SELECT DISTINCT round FROM predictions WHERE run_id = ? ORDER BY round", [run_id]).fetchall()
    return [r[0] for r in rows]


def filter_options(store: Store, run_id: int) -> dict[str, list[Any]]:
    """The values each example filter can take in this run."""
    db = store.db
    splits = [r[0] for r in db.execute("SELECT DISTINCT split FROM examples WHERE run_id = ? ORDER BY split", [run_id])]
    origins = [r[0] for r in db.execute("SELECT DISTINCT origin_round FROM examples WHERE run_id = ? AND origin_round IS NOT NULL "
                                        "ORDER BY origin_round", [run_id])]
    statuses = [r[0] for r in db.execute("SELECT DISTINCT status FROM examples WHERE run_id = ? ORDER BY status", [run_id])]
    reasons = [r[0] for r in db.execute("SELECT DISTINCT reason FROM examples WHERE run_id = ? AND reason IS NOT NULL "
                                        "ORDER BY reason", [run_id])]
    return {"split": splits, "origin_round": origins, "eval_round": evaluated_rounds(store, run_id),
            "status": statuses, "reason": reasons}


def filter_examples(store: Store, run_id: int, flt: ExampleFilter, limit: int = EXAMPLE_LIMIT) -> tuple[list[dict[str, Any]], int, int | None]:
    """Examples matching the filter with the student's answer in the chosen round; (rows, total matches, that round)."""
    eval_round = flt.eval_round
    if eval_round is None:
        rounds = evaluated_rounds(store, run_id)
        eval_round = rounds[-1] if rounds else None
    where, args = ["e.run_id = ?"], [run_id]
    for column, value in (("split", flt.split), ("origin_round", flt.origin_round), ("status", flt.status), ("reason", flt.reason)):
        if value is not None:
            where.append(f"e.{column} = ?")
            args.append(value)
    if flt.result is not None:
        where.append("p.correct = ?")
        args.append(1 if flt.result == "correct" else 0)
    if flt.text:
        where.append("(e.input LIKE ? OR e.target LIKE ?)")
        args += [f"%{flt.text}%"] * 2
    join = "LEFT JOIN predictions p ON p.run_id = e.run_id AND p.example_id = e.id AND p.round = ?"
    clause = " AND ".join(where)
    total = store.db.execute(f"SELECT COUNT(*) FROM examples e {join} WHERE {clause}", [eval_round, *args]).fetchone()[0]
    sql = (f"SELECT e.id, e.split, e.origin_round, e.parent_id, e.status, e.reason, e.input, e.answer, "
           f"p.extracted, p.correct FROM examples e {join} WHERE {clause} ORDER BY e.id LIMIT ?")
    rows = [dict(r) for r in store.db.query(sql, [eval_round, *args, limit])]
    return rows, int(total), eval_round


def example_detail(store: Store, example_id: int) -> dict[str, Any]:
    """One example with its student answers per round and how many children the teacher wrote from it."""
    ex = store.example(example_id)
    ex["predictions"] = store.predictions(ex["run_id"], example_id=example_id)
    ex["children"] = store.count("examples", run_id=ex["run_id"], parent_id=example_id)
    return ex


@dataclass
class LineageNode:
    """An example, the student's answers to it round by round, and the examples the teacher wrote from it."""

    example: dict[str, Any]
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    children: list[LineageNode] = field(default_factory=list)

    def rounds(self) -> list[int]:
        """Rounds in which something happened to this example (answered, or children written)."""
        written = {c.example["origin_round"] for c in self.children if c.example["origin_round"] is not None}
        return sorted(set(self.predictions) | written)

    def children_of_round(self, idx: int) -> list[LineageNode]:
        """Children written from this example's miss in round idx."""
        return [c for c in self.children if c.example["origin_round"] == idx]


def lineage_root(store: Store, example_id: int) -> int:
    """The original (seed) example an example descends from."""
    ex = store.example(example_id)
    seen = {ex["id"]}
    while ex.get("parent_id") is not None and ex["parent_id"] not in seen:
        ex = store.example(ex["parent_id"])
        seen.add(ex["id"])
    return int(ex["id"])


def lineage(store: Store, example_id: int, max_depth: int = 8) -> LineageNode:
    """The family tree of the seed example `example_id` descends from, with every answer of the student."""
    root = store.example(lineage_root(store, example_id))
    run_id = root["run_id"]

    def build(ex: dict[str, Any], depth: int) -> LineageNode:
        node = LineageNode(ex, {p["round"]: p for p in store.predictions(run_id, example_id=ex["id"])})
        if depth < max_depth:
            kids = store.db.query("SELECT id FROM examples WHERE run_id = ? AND parent_id = ? ORDER BY id", [run_id, ex["id"]])
            node.children = [build(store.example(k["id"]), depth + 1) for k in list(kids)]
        return node

    return build(root, 0)
