"""The states a run or a sweep can be in."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """A run's (or a sweep's) status; stored as its text value."""

    CREATED = "created"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FINISHED = "finished"
    FAILED = "failed"
    CRASHED = "crashed"  # never stored: a running run whose worker is gone (see runs.effective_status)


LIVE = (RunStatus.RUNNING, RunStatus.STOPPING)
