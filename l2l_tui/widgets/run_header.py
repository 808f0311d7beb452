"""The header lines of a run: name, status, task, models, plan, best round, error."""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from textual.widgets import Static

from engine.reports.run_report import pct
from engine.store.rows import Run
from l2l_tui.fmt import local_time, short_model, status_markup


def header_markup(run: Run | None, status: str, rows: list[dict[str, Any]], frozen: bool = False) -> str:
    """Rich markup describing a run (its resolved config and where it stands)."""
    if run is None:
        return f"[bold red]this run is gone from the store[/] ({status})"
    cfg = run.config
    done = sum(1 for r in rows if r["phase"] == "done")
    lines = [f"[bold]run {run.id}[/] {escape(run.name)} · {status_markup(status)} · task [bold]{escape(run.task_name)}[/]"
             f" · rounds {done}/{cfg['loop']['rounds']} · started {local_time(run.created, frozen)}"]
    models = f"student {escape(short_model(cfg['student']['model']))} → teacher {escape(short_model(cfg['teacher']['model']))}"
    if run.plan:
        models += f" · training {escape(run.plan['mode'])} on {escape(run.plan['device'])}"
    lines.append(models)
    best = run.best_round
    row = next((r for r in rows if r["round"] == best), None) if best is not None else None
    base = next((r for r in rows if r["round"] == 0), None)
    if row is not None and base is not None:
        lines.append(f"[bold]best round {best}[/]: validation {pct(row['val_acc'])}% · test {pct(row['test_acc'])}%"
                     f"   [dim]round 0 (plain fine-tuning): validation {pct(base['val_acc'])}% · test {pct(base['test_acc'])}%[/]")
    if run.error:
        lines.append(f"[bold red]error:[/] {escape(run.error)}")
    return "\n".join(lines)


class RunHeader(Static):
    """Two or three lines on top of the dashboard."""

    def show(self, run: Run | None, status: str, rows: list[dict[str, Any]], frozen: bool = False) -> None:
        """Describe this run."""
        self.update(header_markup(run, status, rows, frozen))
