"""The sweep screen's tables: per-arm accuracy and cost, paired test deltas, rejections by reason, one arm's runs."""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.text import Text

from engine.reports.run_report import pct, per_set_deltas
from l2l_tui.fmt import STATUS_STYLE
from l2l_tui.widgets.row_table import RowTable

BASELINES = ("plain", "paper")  # engine.reports.sweep_report.BASELINES, without importing numpy on the UI thread


def delta_text(p: Any) -> Text:
    """A Paired as '+3.3 [-1.2, +7.5]', with ' *' and colour when zero is outside the 95% interval."""
    if p is None:
        return Text("-", style="dim", justify="right")
    mark = " *" if p.outside else "  "
    style = ("bold green" if p.delta > 0 else "bold red") if p.outside else ""
    return Text(f"{100 * p.delta:+.1f} [{100 * p.ci_low:+.1f}, {100 * p.ci_high:+.1f}]{mark}", style=style, justify="right")


def per_set_text(p: Any) -> Text:
    """The delta of each seed set both arms finished (engine.reports.run_report.per_set_deltas)."""
    return Text("-", style="dim") if p is None else Text(per_set_deltas(p.per_set))


class ArmTable(RowTable):
    """One row per arm: finished runs of planned, validation and test % (mean ± sd over seed sets), cost, run ids."""

    COLUMNS = (("arm", "arm"), ("runs", "runs"), ("val %", "val"), ("test %", "test"), ("teacher calls", "calls"),
               ("kept", "kept"), ("minutes", "minutes"), ("run ids", "ids"))

    def show(self, rows: list[dict[str, Any]], run_ids: dict[str, list[int]]) -> None:
        """Replace the rows (engine.reports.sweep_report.arm_rows; run_ids: every created run of an arm)."""
        self.fill([(row["arm"], [
            Text(row["arm"], style="bold"), Text(f"{row['runs']}/{row['planned']}", justify="right"),
            Text(row["val"].show(100), justify="right"), Text(row["test"].show(100), justify="right"),
            Text(row["teacher_calls"].show(digits=0), justify="right"), Text(row["kept"].show(digits=0), justify="right"),
            Text(row["minutes"].show(digits=1), justify="right"),
            Text(" ".join(str(i) for i in run_ids.get(row["arm"], [])) or "-"),
        ]) for row in rows])


class DeltaTable(RowTable):
    """Paired test difference of each arm against plain and against paper, pooled and per seed set."""

    COLUMNS = (("arm", "arm"), *((label, key) for base in BASELINES for label, key in (
        (f"vs {base} [95% CI]", f"vs_{base}"), (f"per seed set vs {base}", f"sets_{base}"))))

    def show(self, rows: list[dict[str, Any]]) -> None:
        """Replace the rows (engine.reports.sweep_report.arm_rows)."""
        self.fill([(row["arm"], [Text(row["arm"], style="bold"),
                                 *(t for base in BASELINES for t in (delta_text(row[f"vs_{base}"]), per_set_text(row[f"vs_{base}"])))])
                   for row in rows])


class RejectedTable(RowTable):
    """Teacher examples rejected, one row per reason, one column per arm (all seed sets); the most frequent first."""

    def show(self, rows: list[dict[str, Any]]) -> None:
        """Rebuild columns and rows from the arms' rejection counters."""
        arms = [row["arm"] for row in rows]
        total: Counter[str] = sum((row["rejected"] for row in rows), Counter())
        current = self.selected_key
        self.clear(columns=True)
        self.add_column("reason", key="reason")
        for arm in arms:
            self.add_column(arm, key=f"arm:{arm}")
        for reason, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0])):
            self.add_row(reason, *(_count(row["rejected"].get(reason, 0)) for row in rows), key=reason)
        if total:
            self.add_row(Text("total", style="bold"), *(_count(sum(row["rejected"].values()), "bold") for row in rows),
                         key="total")
        keys = [reason for reason, _ in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))] + ["total"]
        if current in keys:
            self.move_cursor(row=keys.index(current), scroll=False)


class ArmRunsTable(RowTable):
    """The runs of one arm, one row per seed set (planned ones not created yet included); the row key is the run id."""

    COLUMNS = (("set", "set"), ("run", "run"), ("status", "status"), ("round", "round"), ("val %", "val"),
               ("test %", "test"), ("kept", "kept"), ("rej", "rejected"))

    def show(self, runs: list[Any], seed_sets: int) -> None:
        """Replace the rows (engine.reports.sweep_report.RunFacts of one arm)."""
        by_set = {r.seed_set: r for r in runs}
        rows: list[tuple[str, list[Any]]] = []
        for s in range(max(seed_sets, max(by_set, default=-1) + 1)):
            r = by_set.get(s)
            if r is None:
                rows.append((f"set-{s}", [Text(str(s), justify="right"), "-", Text("not started", style="dim"),
                                          "", "", "", "", ""]))
                continue
            rows.append((str(r.run_id), [
                Text(str(s), justify="right"), Text(str(r.run_id), justify="right"),
                Text(r.status, style=STATUS_STYLE.get(r.status, "")),
                Text("-" if r.best_round is None else str(r.best_round), justify="right"),
                Text(pct(r.val_acc), justify="right"), Text(pct(r.test_acc), justify="right"),
                Text(str(r.kept), justify="right"), Text(str(sum(r.rejected.values())), justify="right"),
            ]))
        self.fill(rows)

    @property
    def selected_run_id(self) -> int | None:
        """The run under the cursor (None on a seed set not started)."""
        key = self.selected_key
        return int(key) if key is not None and key.isdigit() else None


def _count(n: int, style: str = "") -> Text:
    return Text(str(n) if n else "·", style=style if n else "dim", justify="right")
