"""`l2l report SWEEP`: per arm, accuracy and cost over seed sets, and paired test differences with a two-level bootstrap."""

from __future__ import annotations

import csv
import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Group
from rich.text import Text

from engine.reports.compare import correct_by_text
from engine.reports.run_report import PHASE_NAMES, fitted_table, left_then_right, per_set_deltas
from engine.store.db import Store, beside_store, private_dir
from engine.store.rows import Sweep
from engine.store.status import RunStatus

# what every arm is paired with where the sweep has it; `l2l report --against ARM` adds others
BASELINES = ("plain", "plain_tuned", "paper", "eda")
RESAMPLES = 4000


@dataclass
class RunFacts:
    """One finished (arm, seed set) run as the report uses it."""

    arm: str
    seed_set: int
    run_id: int
    status: str
    best_round: int | None
    val_acc: float | None
    test_acc: float | None
    teacher_calls: int  # requests made, cache hits included: the cost a run on its own would pay
    examples_requested: int
    kept: int
    rejected: Counter[str]
    minutes: float
    val_by_round: list[float | None]
    test_correct: dict[str, int] = field(default_factory=dict)  # content hash -> 1/0 at the chosen round
    seed_size: int = 0  # the cell's seed size (0: the config's own, in a sweep without seed sizes)
    steps: int | None = None  # optimizer steps of the chosen round


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation over seed sets."""

    mean: float | None
    sd: float | None
    n: int

    @classmethod
    def of(cls, values: list[float | None]) -> Spread:
        """The spread of the values that exist."""
        got = [v for v in values if v is not None]
        if not got:
            return cls(None, None, 0)
        return cls(statistics.fmean(got), statistics.stdev(got) if len(got) > 1 else 0.0, len(got))

    def show(self, scale: float = 1.0, digits: int = 1) -> str:
        """'79.6 ± 1.3' ('-' when empty)."""
        if self.mean is None:
            return "-"
        return f"{self.mean * scale:.{digits}f} ± {(self.sd or 0.0) * scale:.{digits}f}"


@dataclass(frozen=True)
class Paired:
    """Test accuracy of `arm` minus `against`, pooled over the seed sets both finished, with a 95% interval."""

    arm: str
    against: str
    delta: float
    ci_low: float
    ci_high: float
    per_set: dict[int, float]
    n_examples: int

    @property
    def outside(self) -> bool:
        """Whether zero is outside the interval."""
        return self.ci_low > 0 or self.ci_high < 0


@dataclass
class SweepReport:
    """Everything `l2l report` shows and writes."""

    sweep: Sweep
    runs: list[RunFacts]
    arms: list[str]

    @property
    def sizes(self) -> list[int]:
        """The sweep's seed sizes, smallest first ([0]: the config's own size alone)."""
        return sorted(self.sweep.seed_sizes or [0])

    def of_arm(self, arm: str, size: int | None = None) -> list[RunFacts]:
        """The finished runs of one arm (at one seed size, or the first), by seed set."""
        size = self.sizes[0] if size is None else size
        return sorted((r for r in self.runs if r.arm == arm and r.seed_size == size and r.status == RunStatus.FINISHED),
                      key=lambda r: r.seed_set)


def gather(store: Store, sweep_id: int) -> SweepReport:
    """Read every run of a sweep from the store."""
    from engine.run.runs import effective_status

    sweep = store.sweep(sweep_id)
    facts = []
    for cell in store.sweep_runs(sweep_id):
        run_id = cell.run_id
        run = store.run(run_id)
        rounds = store.rounds(run_id)
        best = run.best_round
        chosen = rounds[best] if best is not None and best < len(rounds) else None
        rejected: Counter[str] = Counter()
        calls = requested = 0
        seconds = 0.0
        for r in rounds:
            rejected.update(r.filter.get("reasons") or {})
            calls += r.augment.get("requests") or 0
            requested += r.augment.get("examples_requested") or 0
            seconds += sum(float(p.get("wall_seconds") or p.get("seconds") or 0) for p in map(r.record, PHASE_NAMES))
        facts.append(RunFacts(
            arm=cell.arm, seed_set=cell.seed_set, run_id=run_id, status=effective_status(run),
            best_round=best, val_acc=chosen.val_acc if chosen else None, test_acc=chosen.test_acc if chosen else None,
            teacher_calls=calls,
            examples_requested=requested, kept=store.count("examples", run_id=run_id, split="synthetic", status="kept"),
            rejected=rejected, minutes=seconds / 60, val_by_round=[r.val_acc for r in rounds],
            test_correct=correct_by_text(store, run_id, best, "test") if best is not None else {},
            seed_size=cell.seed_size,
            steps=chosen.train.get("steps") if chosen else None))
    return SweepReport(sweep=sweep, runs=facts, arms=sweep.arm_names)


def paired(report: SweepReport, arm: str, against: str, resamples: int = RESAMPLES, seed: int = 0,
           size: int | None = None) -> Paired | None:
    """Pool the per-example test differences over the seed sets both arms finished (at one seed size); the 95%
    interval comes from a two-level bootstrap (seed sets with replacement, then test examples within each), so it
    carries the spread between seed draws as well as the test sample's."""
    ours = {r.seed_set: r for r in report.of_arm(arm, size)}
    theirs = {r.seed_set: r for r in report.of_arm(against, size)}
    sets = sorted(set(ours) & set(theirs))
    diffs: list[np.ndarray] = []
    per_set: dict[int, float] = {}
    for s in sets:
        keys = sorted(set(ours[s].test_correct) & set(theirs[s].test_correct))
        if not keys:
            continue
        d = np.array([ours[s].test_correct[k] - theirs[s].test_correct[k] for k in keys], dtype=np.int8)
        diffs.append(d)
        per_set[s] = float(d.mean())
    if not diffs:
        return None
    rng = np.random.default_rng(seed)
    boots = np.empty(resamples)
    for b in range(resamples):
        picked = rng.integers(0, len(diffs), len(diffs))
        total = count = 0
        for i in picked:
            d = diffs[i]
            total += int(d[rng.integers(0, len(d), len(d))].sum())
            count += len(d)
        boots[b] = total / count
    pooled = float(np.concatenate(diffs).mean())
    low, high = np.quantile(boots, [0.025, 0.975])
    return Paired(arm=arm, against=against, delta=pooled, ci_low=float(low), ci_high=float(high), per_set=per_set,
                  n_examples=sum(len(d) for d in diffs))


def arm_rows(report: SweepReport, baselines: tuple[str, ...] = BASELINES, size: int | None = None) -> list[dict[str, Any]]:
    """One row per arm (at one seed size, or the first): spreads of accuracy and cost, rejection counts, and the
    paired deltas against `baselines`."""
    rows = []
    size = report.sizes[0] if size is None else size
    for arm in report.arms:
        runs = report.of_arm(arm, size)
        row: dict[str, Any] = {
            "arm": arm, "seed_size": size, "runs": len(runs), "planned": report.sweep.seed_sets,
            "val": Spread.of([r.val_acc for r in runs]), "test": Spread.of([r.test_acc for r in runs]),
            "teacher_calls": Spread.of([float(r.teacher_calls) for r in runs]),
            "kept": Spread.of([float(r.kept) for r in runs]), "minutes": Spread.of([r.minutes for r in runs]),
            "rejected": sum((r.rejected for r in runs), Counter()),
            "steps": Spread.of([float(r.steps) for r in runs if r.steps is not None]),
            # what a teacher call buys: kept examples per call (write and verify calls alike)
            "kept_per_call": Spread.of([r.kept / r.teacher_calls for r in runs if r.teacher_calls]),
        }
        for base in baselines:
            row[f"vs_{base}"] = paired(report, arm, base, size=size) if arm != base and base in report.arms else None
        rows.append(row)
    return rows


def _delta(p: Paired | None) -> str:
    if p is None:
        return "-"
    mark = " *" if p.outside else ""
    return f"{100 * p.delta:+.1f} [{100 * p.ci_low:+.1f}, {100 * p.ci_high:+.1f}]{mark}"


def _per_set(p: Paired | None) -> str:
    return "-" if p is None else per_set_deltas(p.per_set)


def _baselines(rows: list[dict[str, Any]]) -> list[str]:
    """The arms the rows were paired with (arm_rows' `baselines`) that are arms of the sweep."""
    arms = {row["arm"] for row in rows}
    return [key[3:] for key in rows[0] if key.startswith("vs_") and key[3:] in arms] if rows else list(BASELINES)


def render(report: SweepReport, rows: list[dict[str, Any]], files: dict[str, Path] | None = None,
           curve: Sequence[Any] = (), width: int = 120) -> Group:
    """The report as tables that show every number whole in `width` characters: per seed size, the arms and one table
    of paired differences per baseline; then `curve` (engine.reports.curve's parts, for a sweep with several seed sizes)."""
    baselines = _baselines(rows)
    sweep = report.sweep
    sizes = sorted({row.get("seed_size", 0) for row in rows})
    sized = f" · seed sizes {', '.join(map(str, sizes))}" if sizes != [0] else ""
    head = Text.assemble((f"sweep {sweep.id} ", "bold"),
                         f"{sweep.name} · {sweep.status} · {sweep.seed_sets} seed sets{sized} · "
                         f"{len(report.arms)} arms · test accuracy at the round validation chose")
    parts: list[Any] = [head, *_strength(report, sizes)]
    for size in sizes:
        at = [row for row in rows if row.get("seed_size", 0) == size]
        where = f" at {size} seeds" if size else ""
        cells = [[row["arm"], f"{row['runs']}/{row['planned']}", row["val"].show(100), row["test"].show(100),
                  row["steps"].show(digits=0) if row.get("steps") else "-", row["teacher_calls"].show(digits=0),
                  row["kept"].show(digits=0), row["kept_per_call"].show(digits=2) if row.get("kept_per_call") else "-",
                  row["minutes"].show(digits=1)] for row in at]
        parts.append(fitted_table(["arm", "runs", "val %", "test %", "steps", "calls", "kept", "kept/call", "min"], cells,
                                  width, left_then_right(9), title=f"per arm{where} (mean ± sd over seed sets)",
                                  drop=["min", "calls", "kept/call", "steps", "val %"]))
        for base in baselines:
            deltas = [[row["arm"], _delta(row[f"vs_{base}"]), _per_set(row[f"vs_{base}"])] for row in at
                      if row["arm"] != base]
            if not deltas:
                continue
            note = matched_note(report.sweep.arms, base)
            parts.append(fitted_table(["arm", f"vs {base}, points [95% CI]", "per seed set"], deltas, width,
                                      [*left_then_right(2), "left"], title=f"paired test difference{where} against {base}"
                                      f"{f' ({note})' if note else ''} (two-level bootstrap; * = zero outside the CI)",
                                      drop=["per seed set"]))
    parts += list(curve)
    reasons = sorted({reason for row in rows for reason in row["rejected"]})
    if reasons:
        totals: dict[str, Counter[str]] = {}
        for row in rows:
            totals.setdefault(row["arm"], Counter()).update(row["rejected"])
        arms = [arm for arm, counts in totals.items() if counts]
        counts = [[reason.replace("_", " "), *(str(totals[arm].get(reason, 0)) for arm in arms)] for reason in reasons]
        parts.append(fitted_table(["reason", *arms], counts, width, left_then_right(len(arms) + 1),
                                  title="examples rejected, by reason (all seed sets and sizes)"))
    for name, path in (files or {}).items():
        parts.append(Text(f"{name}: {path}", style="dim"))
    return Group(*parts)


# what a matched arm takes from its reference run, as the report names it
_MATCHED = {"steps": "optimizer steps", "kept": "kept examples a round", "budget": "teacher budget"}


def matched_note(arms: list[dict[str, Any]], base: str) -> str:
    """For a matched baseline, the arm it is matched to ("" for any other): against any other arm the comparison is not
    matched (an arm that trains longer than the reference meets an under-trained plain)."""
    row = next((a for a in arms if a["name"] == base), None)
    if row is None or not row.get("matched") or not row.get("reference"):
        return ""
    what = _MATCHED.get(row["matched"], row["matched"])
    return f"{base} has the {what} of {row['reference']}: matched for {row['reference']} only"


def _strength(report: SweepReport, sizes: list[int]) -> list[Text]:
    """The teacher's blind validation accuracy (measured once per sweep) beside the round-0 student's, per seed size."""
    judge = report.sweep.judge
    if not judge:
        return []
    students = []
    for size in sizes:
        firsts = [r.val_by_round[0] for arm in report.arms for r in report.of_arm(arm, size) if r.val_by_round
                  and r.val_by_round[0] is not None]
        if firsts:
            where = f"n={size}: " if size else ""
            students.append(f"{where}{100 * statistics.fmean(firsts):.1f}%")
    line = (f"teacher, judging {judge['rows']} validation rows blind: {100 * judge['agreement']:.1f}% "
            f"(always {judge['majority']!r}: {100 * judge['majority_share']:.1f}%); round-0 student on validation: "
            f"{', '.join(students) or '-'}")
    return [Text(line)]


def write_files(report: SweepReport, rows: list[dict[str, Any]], folder: Path) -> dict[str, Path]:
    """arms.csv, runs.csv and report.png in `folder` (created owner-only)."""
    private_dir(folder)
    baselines = _baselines(rows)
    arms_csv, runs_csv, png = folder / "arms.csv", folder / "runs.csv", folder / "report.png"
    with open(arms_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["arm", "seed_size", "runs", "val_mean", "val_sd", "test_mean", "test_sd", "teacher_calls_mean",
                    "kept_mean", "kept_per_call_mean", "minutes_mean",
                    *(f"{k}_{b}" for b in baselines for k in ("delta", "ci_low", "ci_high")), "rejected"])
        for row in rows:
            cells: list[Any] = [row["arm"], row.get("seed_size", 0), row["runs"], row["val"].mean, row["val"].sd,
                                row["test"].mean, row["test"].sd,
                                row["teacher_calls"].mean, row["kept"].mean, row["kept_per_call"].mean,
                                row["minutes"].mean]
            for base in baselines:
                p = row[f"vs_{base}"]
                cells += [p.delta, p.ci_low, p.ci_high] if p else ["", "", ""]
            cells.append(";".join(f"{k}={v}" for k, v in sorted(row["rejected"].items())))
            w.writerow(cells)
    with open(runs_csv, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["arm", "seed_size", "seed_set", "run_id", "status", "best_round", "steps", "val_acc", "test_acc",
                    "teacher_calls", "examples_requested", "kept", "minutes", "val_by_round"])
        for r in sorted(report.runs, key=lambda r: (r.arm, r.seed_size, r.seed_set)):
            w.writerow([r.arm, r.seed_size, r.seed_set, r.run_id, r.status, r.best_round, r.steps, r.val_acc, r.test_acc,
                        r.teacher_calls, r.examples_requested, r.kept, round(r.minutes, 2),
                        " ".join("" if v is None else f"{v:.4f}" for v in r.val_by_round)])
    if len(report.sizes) > 1:
        plot_curve_png(report, png)
    else:
        plot_png(report, png)
    return {"arms.csv": arms_csv, "runs.csv": runs_csv, "plot": png}


def plot_curve_png(report: SweepReport, path: Path) -> None:
    """Test accuracy against seed size per arm (mean, band: min-max over seed sets; log-2 size axis)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for i, arm in enumerate(report.arms):
        xs, means, lows, highs = [], [], [], []
        for n in report.sizes:
            values = [100 * r.test_acc for r in report.of_arm(arm, n) if r.test_acc is not None]
            if values:
                xs.append(n)
                means.append(statistics.fmean(values))
                lows.append(min(values))
                highs.append(max(values))
        if not xs:
            continue
        style = "--" if arm == "oracle" else "-"
        ax.plot(xs, means, style, marker="o", color=f"C{i % 10}", label=f"{arm}{' (ceiling)' if arm == 'oracle' else ''}")
        ax.fill_between(xs, lows, highs, color=f"C{i % 10}", alpha=0.12)
    ax.set_xscale("log", base=2)
    ax.set_xticks(report.sizes, [str(n) for n in report.sizes])
    ax.set_xlabel("seed examples (labelled)")
    ax.set_ylabel("test % at the round validation chose (band: min-max of seed sets)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"sweep {report.sweep.id}: {report.sweep.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_png(report: SweepReport, path: Path) -> None:
    """Validation accuracy per round per arm (mean, with the min-max band over seed sets), and each seed set's test
    accuracy at the chosen round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    for i, arm in enumerate(report.arms):
        runs = report.of_arm(arm)
        if not runs:
            continue
        color = f"C{i % 10}"
        depth = max(len(r.val_by_round) for r in runs)
        xs, means, lows, highs = [], [], [], []
        for k in range(depth):
            values = [100 * v for r in runs for v in r.val_by_round[k:k + 1] if v is not None]
            if values:
                xs.append(k)
                means.append(statistics.fmean(values))
                lows.append(min(values))
                highs.append(max(values))
        left.plot(xs, means, marker="o", color=color, label=f"{arm} (n={len(runs)})")
        left.fill_between(xs, lows, highs, color=color, alpha=0.15)
        tests = [100 * r.test_acc for r in runs if r.test_acc is not None]
        right.scatter([i] * len(tests), tests, color=color, alpha=0.7, s=22)
        if tests:
            right.hlines(statistics.fmean(tests), i - 0.3, i + 0.3, color=color, linewidth=2)
    left.set_xlabel("round (0 = plain fine-tuning on the seeds)")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_ylabel("validation % (mean; band: min-max of seed sets)")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    right.set_xticks(range(len(report.arms)), report.arms, rotation=30, ha="right")
    right.set_ylabel("test % at the chosen round (dot: a seed set)")
    right.grid(alpha=0.3, axis="y")
    fig.suptitle(f"sweep {report.sweep.id}: {report.sweep.name}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report_folder(store: Store, sweep_id: int) -> Path:
    """Where a sweep's CSVs and plot go: beside the store, in a folder of its own."""
    return beside_store(store.path, "sweeps") / f"sweep-{sweep_id}"
