"""The engine as its own process: `python -m engine.worker STORE RUN_ID` runs (or resumes) one run headless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def worker_log(store_path: Path, run_id: int) -> Path:
    """Where a detached worker's stdout/stderr go."""
    return Path(store_path).parent / "runs" / str(run_id) / "worker.log"


def spawn_worker(store_path: Path, run_id: int) -> int:
    """Start a detached worker process (own session: it outlives the app) and return its pid."""
    log = worker_log(store_path, run_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
           "TRANSFORMERS_VERBOSITY": "error"}
    with open(log, "ab") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "engine.worker", str(store_path), str(run_id)],
                                stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, env=env, close_fds=True)
    return proc.pid


def main(argv: list[str]) -> int:
    """Run the loop for one run; exit 0 when finished or stopped, 1 on failure."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from engine.loop import Loop
    from engine.status import RunStatus
    from engine.store import Store

    store = Store(Path(argv[0]), create=False)
    run_id = int(argv[1])
    try:
        status = Loop(store, run_id, on_log=lambda message, kind: print(message, flush=True)).run()
    except Exception:
        import traceback

        traceback.print_exc()
        return 1
    return 0 if status in (RunStatus.FINISHED, RunStatus.STOPPED) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
