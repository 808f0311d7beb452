"""Fault injection for the crash tests: L2L_FAULT='<phase>:<round>[:<point>]:<how>' acts where the loop says so.

Phases: train, eval, augment, verify (the filter's blind verification calls), filter; 'report:0' is the run's last
step (every round done, not yet marked finished) and 'sweep:<cell number>' the gap after a sweep's cell;
'export:<run>:<part>' is after a part of `l2l export` landed (data, adapter, merged, gguf; manifest: just before the
manifest is written) and 'export:0:writing' in the middle of writing a JSONL file. Points: none
(the phase's results are computed, not yet committed), 'done' (just committed), 'stepN' (after training step N), 'save'
(inside the adapter save: the weights file is left half-written), 'batchN' (after evaluation batch N), 'replyN' (after
the N-th teacher reply of the phase was committed), 'unsavedN' (the N-th reply came back, not committed yet).
How: kill (SIGKILL), term (SIGTERM), int (SIGINT, as Ctrl-C). With L2L_FAULT_ONCE=<path> the fault acts only in the
first process to reach it (it makes the file), as a worker that dies once and is then run again.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def _spec() -> tuple[str, str] | None:
    spec = os.environ.get("L2L_FAULT")
    if not spec:
        return None
    where, _, how = spec.rpartition(":")
    return where, how


def act(how: str) -> None:
    """Do what the fault says: kill -9, or send SIGTERM / SIGINT to this process (handled like the real ones)."""
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif how == "term":
        os.kill(os.getpid(), signal.SIGTERM)
    elif how == "int":
        os.kill(os.getpid(), signal.SIGINT)
    else:
        raise ValueError(f"L2L_FAULT: unknown action {how!r} (kill, term, int)")


def fault_point(phase: str, idx: int, point: str | None = None) -> None:
    """Act when L2L_FAULT names this place (a no-op otherwise)."""
    spec = _spec()
    if spec is None:
        return
    where = f"{phase}:{idx}" if point is None else f"{phase}:{idx}:{point}"
    if spec[0] == where and _first_here():
        act(spec[1])


def _first_here() -> bool:
    """True unless L2L_FAULT_ONCE names a file another process made already (made now, atomically, if not)."""
    marker = os.environ.get("L2L_FAULT_ONCE")
    if not marker:
        return True
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True


@contextmanager
def torn_adapter_save(idx: int) -> Iterator[None]:
    """With L2L_FAULT='train:<idx>:save:<how>', the adapter's weights file is cut in half as it is written, then the
    fault acts: a save interrupted half-way, as a crash or a full disk leaves it."""
    spec = _spec()
    if spec is None or spec[0] != f"train:{idx}:save":
        yield
        return
    import peft.peft_model as peft_model

    original = peft_model.safe_save_file

    def torn(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        original(tensors, filename, *args, **kwargs)
        with open(filename, "r+b") as fh:
            fh.truncate(os.path.getsize(filename) // 2)
        act(spec[1])

    setattr(peft_model, "safe_save_file", torn)  # noqa: B010  (mypy: the stub types the original narrowly)
    try:
        yield
    finally:
        peft_model.safe_save_file = original
