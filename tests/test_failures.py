"""Expected failures never show a raw traceback: the run stores a one-line cause, `l2l status RUN` and the dashboard
show it, the traceback goes to the run's worker.log only; a store from a newer llm2llm is refused untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from conftest import tiny_config_doc

from engine.config.schema import resolve
from engine.run.failures import failure_cause
from engine.run.runs import create_run, prepare
from engine.run.worker import spawn_worker, worker_log
from engine.store.db import SCHEMA_VERSION, Store
from models.errors import StoreError

REPO = Path(__file__).resolve().parents[1]


def l2l(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "1000"}
    env.pop("L2L_FAULT", None)
    return subprocess.run([sys.executable, "-m", "l2l_tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600)


def test_a_failing_worker_stores_one_line_and_logs_the_traceback(tiny_gguf: Path, tmp_path: Path) -> None:
    """The teacher file is damaged after the run started: the run fails at the teacher phase, said in one line."""
    teacher = tmp_path / "teacher.gguf"
    teacher.write_bytes(tiny_gguf.read_bytes())
    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")
    doc["teacher"]["model"] = str(teacher)
    store = Store(tmp_path / "l2l.db")
    run_id = create_run(store, prepare(resolve(doc)))
    teacher.write_bytes(teacher.read_bytes()[:-8192])
    old = os.environ.pop("L2L_FAULT", None)
    try:
        assert psutil.Process(spawn_worker(store.path, run_id)).wait(timeout=600) == 1
    finally:
        if old is not None:
            os.environ["L2L_FAULT"] = old
    run = store.run(run_id)
    assert run.status == "failed" and "\n" not in run.error
    assert run.error.startswith("ValueError: Failed to load model from file") and str(teacher) in run.error
    log = worker_log(store.path, run_id).read_text(encoding="utf-8")
    assert f"run {run_id} failed: {run.error}" in log and "Traceback (most recent call last)" in log
    assert store.round(run_id, 0).phase == "augment", "train and eval were committed before the failure"

    status = l2l("status", str(run_id), "--store", str(store.path))
    assert status.returncode == 0 and "Traceback" not in status.stdout + status.stderr
    assert "failed" in status.stdout and f"error: {run.error}" in status.stdout

    again = l2l("resume", str(run_id), "--store", str(store.path))
    assert again.returncode == 2 and "Traceback" not in again.stderr
    lines = again.stderr.strip().splitlines()
    assert lines[-1] == f"error: run {run_id} failed: {run.error} (traceback in {worker_log(store.path, run_id)})"
    assert worker_log(store.path, run_id).read_text(encoding="utf-8").count("Traceback (most recent call last)") == 2

    from l2l_tui.queries import dashboard_rounds
    from l2l_tui.widgets.run_header import header_markup

    shown = header_markup(store.run(run_id), "failed", dashboard_rounds(store, run_id), frozen=True)
    assert f"error:[/] {run.error}" in shown


@pytest.mark.parametrize("err, cause", [
    (OSError(28, "No space left on device"), "disk full while writing"),
    (__import__("sqlite3").OperationalError("database or disk is full"), "disk full while writing"),
    (MemoryError(), "out of memory (MemoryError)"),
    (RuntimeError("first line\nsecond line"), "RuntimeError: first line"),
    (StoreError("l2l.db: no run 3"), "l2l.db: no run 3"),
])
def test_causes_are_one_line(err: BaseException, cause: str) -> None:
    text = failure_cause(err)
    assert text.startswith(cause) and "\n" not in text


def test_a_store_from_a_newer_llm2llm_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "l2l.db"
    store = Store(path)
    store.db.execute("INSERT INTO schema_version (version) VALUES (99)")
    store.db.conn.commit()
    store.close()
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(StoreError, match=f"store schema v99 is newer than this llm2llm \\(v{SCHEMA_VERSION}\\)"):
        Store(path)
    proc = l2l("status", "--store", str(path))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip() == f"error: {path}: store schema v99 is newer than this llm2llm (v{SCHEMA_VERSION}); upgrade llm2llm"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before


def test_a_run_that_cannot_start_says_why_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A run whose stored config no longer validates fails before the loop starts, still as one stored line."""
    from engine.run.worker import main

    store = Store(tmp_path / "l2l.db")
    run_id = store.create_run("broken", '{"loop": {"rounds": -1}}', "x", 0, {}, {}, {})
    assert main([str(store.path), str(run_id)]) == 1
    err = capsys.readouterr().err.strip()
    run = store.run(run_id)
    assert run.status == "failed" and "\n" not in run.error and "ValidationError" in run.error
    assert err == f"error: run {run_id} could not start: {run.error}"
    assert "Traceback (most recent call last)" in worker_log(store.path, run_id).read_text(encoding="utf-8")
