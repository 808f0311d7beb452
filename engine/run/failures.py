"""A failure as one line for the run's error column and the CLI; the traceback goes to the run's worker.log only."""

from __future__ import annotations

import errno
import sqlite3
import traceback
from pathlib import Path

from engine.store.db import run_folder
from models.errors import L2LError

_DISK_ERRNOS = {errno.ENOSPC, errno.EFBIG, errno.EDQUOT}


class RunFailed(L2LError):
    """A run's worker stopped on an error; the message is its one-line cause (the traceback is in worker.log)."""


def worker_log(store_path: Path, run_id: int) -> Path:
    """Where a run's worker writes: a detached worker's stdout and stderr, and every failure's traceback."""
    return run_folder(store_path, run_id) / "worker.log"


def disk_full(err: BaseException) -> bool:
    """Whether the error is a full disk (or a file-size limit) while writing the store or a file."""
    for e in _chain(err):
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            return True
        if isinstance(e, sqlite3.OperationalError) and ("disk is full" in str(e) or "disk I/O error" in str(e)):
            return True
    return False


def failure_cause(err: BaseException) -> str:
    """One line: what failed, in words the user can act on."""
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), "")
    if disk_full(err):
        return f"disk full while writing ({first or type(err).__name__}); free some space, then `l2l resume`"
    if isinstance(err, L2LError):
        return first or type(err).__name__
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return f"out of memory ({type(err).__name__}); lower train.batch_size or eval.batch_size, then `l2l resume`"
    line = f"{type(err).__name__}: {first}" if first else type(err).__name__
    return line if len(line) <= 300 else line[:299] + "…"


def append_traceback(log: Path, err: BaseException, header: str) -> bool:
    """Append a header line and the error's traceback to the worker log (False when even that cannot be written)."""
    try:
        from engine.store.db import private_file

        if not log.exists():
            private_file(log)
        with open(log, "a", encoding="utf-8") as fh:
            fh.write(header + "\n" + "".join(traceback.format_exception(err)))
        return True
    except OSError:
        return False


def _chain(err: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen
