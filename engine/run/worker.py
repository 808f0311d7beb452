"""The engine as its own process: `python -m engine.run.worker STORE RUN_ID` runs (or resumes) one run headless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from engine.run.failures import worker_log

__all__ = ["main", "spawn_worker", "worker_log"]


def spawn_worker(store_path: Path, run_id: int) -> int:
    """Start a detached worker process (own session: it outlives the app) and return its pid."""
    from engine.store.db import private_file

    log = worker_log(store_path, run_id)
    private_file(log)  # the owner's only: the log may hold what the store holds
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "engine.run.worker", str(store_path), str(run_id)],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, close_fds=True)
    return proc.pid


def main(argv: list[str]) -> int:
    """Run the loop for one run; exit 0 when finished or stopped, 1 on failure: one line on stderr, the run's error
    column set, the traceback in its worker.log."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.umask(0o077)
    from engine.run.failures import append_traceback, failure_cause
    from engine.run.loop import Loop
    from engine.store.db import Store, now
    from engine.store.status import RunStatus
    from models.errors import L2LError

    try:
        store = Store(Path(argv[0]), create=False)
        run_id = int(argv[1])
    except (L2LError, ValueError, IndexError) as err:
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    try:
        loop = Loop(store, run_id, on_log=lambda message, kind: print(message, flush=True))
    except Exception as err:  # the run cannot even start (its row or config is unusable)
        cause = failure_cause(err)
        append_traceback(worker_log(store.path, run_id), err, f"{now()} run {run_id} could not start: {cause}")
        try:
            store.update_run(run_id, status=RunStatus.FAILED, error=cause, ended=now())
        except Exception:  # noqa: BLE001 - e.g. no such run
            pass
        print(f"error: run {run_id} could not start: {cause}", file=sys.stderr, flush=True)
        return 1
    try:
        status = loop.run()
    except L2LError as err:  # a failed run (cause stored, traceback logged) or a refusal (another worker runs it)
        print(f"error: {err}", file=sys.stderr, flush=True)
        return 1
    return 0 if status in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
