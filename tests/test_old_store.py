"""Stores written before the store returned typed rows (commit 6a4bd3c and earlier) open unchanged: every row reads as
its typed row, the reports print what that code printed, and a run killed mid-round resumes to the end."""

from __future__ import annotations

import json
import lzma
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from engine.store.db import Store

FIXTURE = Path(__file__).parent / "fixtures" / "store_before_typed_rows.db.xz"


def _old_store(tmp_path: Path) -> Path:
    path = tmp_path / "old.db"
    path.write_bytes(lzma.decompress(FIXTURE.read_bytes()))
    return path


def test_an_old_stores_rows_read_as_typed_rows(tmp_path: Path) -> None:
    store = Store(_old_store(tmp_path), create=False)
    try:
        runs = {r.id: r for r in store.runs()}
        assert sorted(runs) == [1, 2] and all(r.status == "finished" for r in runs.values())
        assert runs[1].config["task"]["preset"] == "rotten_tomatoes" and runs[1].best_round == 1
        assert runs[1].task_name == "rotten_tomatoes" and runs[1].splits["workdir"]
        sweep = store.sweep(1)
        assert sweep.arm_names == ["pool_all", "plain_tuned", "pool_random_all", "teach_all", "plain", "oracle"]
        assert sweep.judge is not None and sweep.judge["right"] == 82 and sweep.seed_sizes == [8]
        assert {(c.arm, c.seed_size, c.seed_set): c.run_id for c in store.sweep_runs(1)} == {
            ("pool_all", 8, 0): 1, ("plain_tuned", 8, 0): 2}
        events = store.events(1)
        assert events and all(e.run_id == 1 and isinstance(e.data, dict) for e in events)
        assert store.rounds(1)[1].train["steps"] == 8
        assert store.count("teacher_calls") == 80
    finally:
        store.close()


def test_an_old_store_reports_what_it_recorded(tmp_path: Path) -> None:
    path = _old_store(tmp_path)
    cli = [sys.executable, "-m", "l2l_tui.cli"]
    status = subprocess.run([*cli, "status", "1", "--store", str(path)], capture_output=True, text=True, timeout=300,
                            env={"COLUMNS": "120", "PATH": ""}, check=False)
    assert status.returncode == 0, status.stderr
    assert "validation 84.0% · test 80.7%" in status.stdout and "56 real pool rows" in status.stdout
    report = subprocess.run([*cli, "report", "1", "--store", str(path)], capture_output=True, text=True, timeout=300,
                            env={"COLUMNS": "120", "PATH": ""}, check=False)
    assert report.returncode == 0, report.stderr
    assert "82.0%" in report.stdout and "pool_all" in report.stdout and "1/3" in report.stdout


KILLED = Path(__file__).parent / "fixtures" / "run_killed_before_typed_rows.db.xz"


def test_an_old_run_killed_mid_round_resumes_and_reports(tiny_gguf: Path, tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    path.write_bytes(lzma.decompress(KILLED.read_bytes()))
    # the store was written on another machine: its run points at that machine's tiny model and workdir, and died
    # there; point them here, as they would be had the kill happened on this machine
    with sqlite3.connect(path) as db:
        config_json, splits_json = db.execute("SELECT config, splits FROM runs WHERE id = 1").fetchone()
        config, splits = json.loads(config_json), json.loads(splits_json)
        config["student"]["model"] = config["teacher"]["model"] = str(tiny_gguf)
        config["store"] = str(path)
        splits["workdir"] = str(tmp_path / "runs" / "1")
        db.execute("UPDATE runs SET config = ?, splits = ?, host = ? WHERE id = 1",
                   [json.dumps(config), json.dumps(splits), os.uname().nodename])
    store = Store(path, create=False)
    assert [(r.idx, r.phase) for r in store.rounds(1)] == [(0, "done"), (1, "train")]
    store.close()

    cli = [sys.executable, "-m", "l2l_tui.cli"]
    resumed = subprocess.run([*cli, "resume", "1", "--store", str(path)], capture_output=True, text=True, timeout=600,
                             check=False)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    store = Store(path, create=False)
    try:
        assert store.run(1).status == "finished" and store.run(1).best_round is not None
        assert [(r.idx, r.phase) for r in store.rounds(1)] == [(0, "done"), (1, "done")]
    finally:
        store.close()
    status = subprocess.run([*cli, "status", "1", "--store", str(path)], capture_output=True, text=True, timeout=300,
                            env={"COLUMNS": "120", "PATH": ""}, check=False)
    assert status.returncode == 0 and "best round on validation" in status.stdout, status.stderr
