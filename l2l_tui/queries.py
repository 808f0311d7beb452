"""Read-only views of the store shaped for the app: run list, round details, event tails, filtered examples, lineage, sweeps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.reports.run_report import duration, round_rows
from engine.run.runs import effective_status
from engine.run.worker import worker_log
from engine.store.db import Store, now
from engine.store.rows import Event, ExampleFilter, ExampleListing, ExampleOptions, Prediction, StoredExample, Sweep
from models.errors import StoreError

__all__ = ["ExampleFilter"]  # the browser's filter lives with the store's typed rows; the app imports it from here

LIVE_STATUSES = ("running", "stopping")
EXAMPLE_LIMIT = 2000


def open_store(path: Path) -> Store:
    """A fresh connection to the store (one per thread: workers never share the UI's)."""
    return Store(path, create=True)


def run_list(store: Store) -> list[dict[str, Any]]:
    """Every run as the runs screen shows it: effective status, task, models, rounds, best validation, timing."""
    out = []
    for listing in store.run_listings():
        run = listing.run
        cfg = run.config
        status = effective_status(run)
        live = replace(run, updated=now()) if status in LIVE_STATUSES else run
        out.append({
            "id": run.id, "name": run.name, "status": status, "task": run.task_name,
            "student": cfg["student"]["model"], "teacher": cfg["teacher"]["model"],
            "rounds_done": listing.rounds_done, "rounds_max": cfg["loop"]["rounds"], "best_val": listing.best_val,
            "created": run.created, "duration": duration(live), "pid": run.pid,
        })
    return out


def dashboard_rounds(store: Store, run_id: int) -> list[dict[str, Any]]:
    """engine.reports.run_report.round_rows plus what the filter, training and evaluation recorded per round (rounds.phases)."""
    with store.snapshot():  # one committed state: never a round half-way through a phase's commit
        of_round = {r.idx: r for r in store.rounds(run_id)}
        rounds = round_rows(store, run_id)
    rows = []
    for row in rounds:
        found = of_round.get(row["round"])
        filt, train, evaluation = (found.record(p) if found else {} for p in ("filter", "train", "eval"))
        rows.append({**row, "reasons": filt.get("reasons") or {}, "flags": filt.get("flags") or {},
                     "label_mix": train.get("label_mix") or {}, "label_mix_after": filt.get("label_mix_after") or {},
                     "validation_answers": evaluation.get("validation_answers") or {},
                     "verify_calls": filt.get("verify_calls")})
    return rows


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


def events_tail(store: Store, run_id: int, limit: int = 300) -> list[Event]:
    """The last `limit` events of a run, oldest first."""
    return store.last_events(run_id, limit)


def filter_options(store: Store, run_id: int) -> ExampleOptions:
    """The values each example filter can take in this run, with the examples per reason and per origin."""
    return store.example_options(run_id)


def filter_examples(store: Store, run_id: int, flt: ExampleFilter, limit: int = EXAMPLE_LIMIT,
                    offset: int = 0) -> tuple[list[ExampleListing], int, int | None]:
    """One page of the examples matching the filter, with the student's answer in the chosen round; (rows, total
    matches, that round). Count and page come from one snapshot."""
    with store.snapshot():
        eval_round = flt.eval_round
        if eval_round is None:
            rounds = store.evaluated_rounds(run_id)
            eval_round = rounds[-1] if rounds else None
        rows, total = store.example_page(run_id, flt, eval_round, limit, offset)
        return rows, total, eval_round


def example_detail(store: Store, example_id: int) -> dict[str, Any]:
    """One example with its student answers per round and how many children the teacher wrote from it."""
    ex = store.example(example_id)
    return example_view_data(ex, store.predictions(ex.run_id, example_id=example_id),
                             store.count("examples", run_id=ex.run_id, parent_id=example_id))


def example_view_data(ex: StoredExample, predictions: Sequence[Prediction], children: int) -> dict[str, Any]:
    """What the example view shows: the example's fields, its answers in round order and its children's count."""
    return {**asdict(ex), "predictions": [asdict(p) for p in sorted(predictions, key=lambda p: p.round)],
            "children": children}


@dataclass
class LineageNode:
    """An example, the student's answers to it round by round, and the examples the teacher wrote from it."""

    example: StoredExample
    predictions: dict[int, Prediction] = field(default_factory=dict)
    children: list[LineageNode] = field(default_factory=list)

    def rounds(self) -> list[int]:
        """Rounds in which something happened to this example (answered, or children written)."""
        written = {c.example.origin_round for c in self.children if c.example.origin_round is not None}
        return sorted(set(self.predictions) | written)

    def children_of_round(self, idx: int) -> list[LineageNode]:
        """Children written from this example's miss in round idx."""
        return [c for c in self.children if c.example.origin_round == idx]


def lineage_root(store: Store, example_id: int) -> int:
    """The original (seed) example an example descends from."""
    ex = store.example(example_id)
    seen = {ex.id}
    while ex.parent_id is not None and ex.parent_id not in seen:
        ex = store.example(ex.parent_id)
        seen.add(ex.id)
    return ex.id


def lineage(store: Store, example_id: int, max_depth: int = 8) -> LineageNode:
    """The family tree of the seed example `example_id` descends from, with every answer of the student."""
    with store.snapshot():
        return _lineage(store, example_id, max_depth)


def _lineage(store: Store, example_id: int, max_depth: int) -> LineageNode:
    root = store.example(lineage_root(store, example_id))
    run_id = root.run_id

    def build(ex: StoredExample, depth: int) -> LineageNode:
        node = LineageNode(ex, {p.round: p for p in store.predictions(run_id, example_id=ex.id)})
        if depth < max_depth:
            node.children = [build(store.example(k), depth + 1) for k in store.child_ids(run_id, ex.id)]
        return node

    return build(root, 0)


# sweeps -----------------------------------------------------------------------------------------------
def sweep_list(store: Store) -> list[dict[str, Any]]:
    """Every sweep as the sweeps screen shows it: effective status, arms, seed sets, runs finished of planned."""
    counts = store.sweep_counts()
    out = []
    for sweep in store.sweeps():
        arms = sweep.arm_names
        got = counts.get(sweep.id)
        sizes = len(sweep.seed_sizes or [0])  # cells are arm x seed size x seed set
        out.append({"id": sweep.id, "name": sweep.name, "status": effective_status(sweep), "arms": arms,
                    "seed_sets": sweep.seed_sets, "planned": len(arms) * sizes * sweep.seed_sets,
                    "created_runs": got.created if got else 0, "finished": got.finished if got else 0,
                    "created": sweep.created, "error": sweep.error})
    return out


def sweep_signature(store: Store, sweep_id: int) -> tuple[Any, ...] | None:
    """A cheap fingerprint of everything the sweep screen shows (None: the sweep is gone); it changes with any round."""
    try:
        sweep = store.sweep(sweep_id)
    except StoreError:
        return None
    return (effective_status(sweep), sweep.updated,
            tuple((c.arm, c.seed_set, c.run_id, effective_status(c), c.updated, c.best_round, c.rounds)
                  for c in store.cell_states(sweep_id)))


@dataclass
class SweepView:
    """One sweep as the sweep screen shows it (engine.reports.sweep_report's numbers, curves for the plots, written files)."""

    sweep: Sweep  # its status is the effective one (engine.run.runs.effective_status)
    rows: list[dict[str, Any]]  # engine.reports.sweep_report.arm_rows at every seed size (each row has its seed_size)
    runs: list[Any]  # engine.reports.sweep_report.RunFacts of every created run, finished or not
    round_curves: dict[int, dict[str, list[tuple[int, float, float, float, int]]]]  # seed size -> sweep_curves
    finished: tuple[int, ...]  # ids of the finished runs the numbers rest on
    sizes: list[int] = field(default_factory=lambda: [0])  # SweepReport.sizes: [0] for a sweep without seed sizes
    data_curve: dict[str, dict[int, Any]] = field(default_factory=dict)  # engine.reports.curve.curve (several sizes only)
    saved: list[str] = field(default_factory=list)  # engine.reports.curve.labels_saved, shown (several sizes only)
    first_val: dict[int, float] = field(default_factory=dict)  # seed size -> mean round-0 validation of finished runs
    files: dict[str, Path] = field(default_factory=dict)
    files_error: str | None = None

    @property
    def sized(self) -> bool:
        """Whether the sweep has several seed sizes."""
        return len(self.sizes) > 1

    @property
    def curves(self) -> dict[str, list[tuple[int, float, float, float, int]]]:
        """Validation % per round per arm at the smallest seed size."""
        return self.round_curves.get(self.sizes[0], {})

    def rows_at(self, size: int) -> list[dict[str, Any]]:
        """The arm rows at one seed size."""
        return [row for row in self.rows if row.get("seed_size", 0) == size]

    def runs_of(self, arm: str, size: int | None = None) -> list[Any]:
        """The created runs of one arm (at one seed size, else at every size), by seed set."""
        return sorted((r for r in self.runs if r.arm == arm and (size is None or r.seed_size == size)),
                      key=lambda r: (r.seed_size, r.seed_set))


def sweep_curves(runs: list[Any], arms: list[str]) -> dict[str, list[tuple[int, float, float, float, int]]]:
    """Validation % per round per arm over the runs that reached it (runs in flight included, so the plot moves)."""
    curves: dict[str, list[tuple[int, float, float, float, int]]] = {}
    for arm in arms:
        mine = [r for r in runs if r.arm == arm]
        depth = max((len(r.val_by_round) for r in mine), default=0)
        points = []
        for k in range(depth):
            values = [100 * r.val_by_round[k] for r in mine if k < len(r.val_by_round) and r.val_by_round[k] is not None]
            if values:
                points.append((k, sum(values) / len(values), min(values), max(values), len(values)))
        curves[arm] = points
    return curves


def first_validation(runs: list[Any], sizes: list[int]) -> dict[int, float]:
    """Per seed size, the round-0 student's validation accuracy, mean over the finished runs of every arm (what
    `l2l report` sets beside the teacher's blind accuracy)."""
    out = {}
    for size in sizes:
        firsts = [r.val_by_round[0] for r in runs if r.seed_size == size and r.status == "finished" and r.val_by_round
                  and r.val_by_round[0] is not None]
        if firsts:
            out[size] = sum(firsts) / len(firsts)
    return out


def sweep_view(store: Store, sweep_id: int, previous: SweepView | None = None) -> SweepView:
    """gather + arm_rows (at every seed size) of engine.reports.sweep_report, engine.reports.curve's curve and labels saved, and the
    CSVs and PNG written; the arm rows (a bootstrap per arm and size), the curve and the files of `previous` are
    reused while the set of finished runs is the same (only finished runs enter them)."""
    from engine.reports.sweep_report import arm_rows, gather, report_folder, write_files

    report = gather(store, sweep_id)
    sweep = replace(report.sweep, status=effective_status(report.sweep))
    finished = tuple(sorted(r.run_id for r in report.runs if r.status == "finished"))
    sizes = report.sizes
    round_curves = {size: sweep_curves([r for r in report.runs if r.seed_size == size], report.arms) for size in sizes}
    first_val = first_validation(report.runs, sizes)
    if previous is not None and previous.finished == finished and previous.sizes == sizes:
        return SweepView(sweep=sweep, rows=previous.rows, runs=report.runs, round_curves=round_curves, finished=finished,
                         sizes=sizes, data_curve=previous.data_curve, saved=previous.saved, first_val=first_val,
                         files=previous.files, files_error=previous.files_error)
    view = SweepView(sweep=sweep, rows=[row for size in sizes for row in arm_rows(report, size=size)], runs=report.runs,
                     round_curves=round_curves, finished=finished, sizes=sizes, first_val=first_val)
    if len(sizes) > 1:
        from engine.reports.curve import curve, labels_saved

        view.data_curve = curve(report)
        view.saved = [saved.show() for saved in labels_saved(report)]
    try:
        view.files = write_files(report, view.rows, report_folder(store, sweep_id))
    except Exception as err:  # a plot that cannot be written must not hide the tables
        view.files_error = f"{type(err).__name__}: {err}"
    return view
