"""Small formatters for the app: local times, ETA, status colours; frozen mode hides wall-clock values."""

from __future__ import annotations

import re
from datetime import datetime

from engine.reports.run_report import seconds
from engine.store.rows import Progress

FROZEN = "··"
STATUS_STYLE = {
    "created": "dim", "running": "bold green", "stopping": "yellow", "stopped": "yellow",
    "finished": "bold cyan", "failed": "bold red", "crashed": "bold red", "deleted": "dim",
}


def local_time(ts: str | None, frozen: bool = False, with_date: bool = True) -> str:
    """An ISO UTC timestamp in local time ('2025-01-02 13:04' or '13:04:05')."""
    if frozen:
        return FROZEN
    if not ts:
        return "-"
    try:
        moment = datetime.fromisoformat(ts).astimezone()
    except ValueError:
        return ts
    return moment.strftime("%Y-%m-%d %H:%M" if with_date else "%H:%M:%S")


def span(value: float | None, frozen: bool = False) -> str:
    """A duration in seconds as '12s' / '3m04s' (engine.reports.run_report.seconds), hidden when frozen."""
    return FROZEN if frozen and value is not None else seconds(value)


def eta(progress: Progress) -> tuple[float | None, float | None]:
    """(elapsed, remaining) seconds of the phase in flight, from its progress row (started → updated, done/total)."""
    started, updated, done, total = progress.started, progress.updated, progress.done, progress.total
    elapsed = max(0.0, updated - started)
    if done <= 0 or total <= 0 or elapsed <= 0:
        return elapsed, None
    return elapsed, max(0.0, elapsed / done * (total - done))


def status_markup(status: str) -> str:
    """A status word with its colour, as Rich markup."""
    return f"[{STATUS_STYLE.get(status, '')}]{status}[/]"


def short_model(model: str, width: int = 32) -> str:
    """A model name or path cut to its file name and a width."""
    return cut(model.rstrip("/").rsplit("/", 1)[-1], width)


def cut(text: str, width: int) -> str:
    """Text cut to a width with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


_VOLATILE = [
    (re.compile(r"\bpid \d+"), "pid ··"),
    (re.compile(r"(?:/[\w.\-]+)+/(?=[\w.\-]+)"), "…/"),
    (re.compile(r"\b\d+m\d{2}s\b"), "··"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?s\b"), "··s"),
    (re.compile(r"(\"[a-z_]*seconds\"|\"[a-z_]*_s\"|tokens_per_s\"?):\s?[\d.]+"), r"\1: ··"),
]


def scrub(message: str) -> str:
    """A log message with pids and measured durations hidden (frozen mode: snapshots must not depend on timing)."""
    for pattern, repl in _VOLATILE:
        message = pattern.sub(repl, message)
    return message
