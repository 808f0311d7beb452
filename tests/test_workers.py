"""One worker per run, proven: the claim is atomic in SQLite, a dead or pid-reused claim is taken over, two `l2l resume`
started together leave one worker; readers polling hard through the CLI's and the app's queries never see a lock
error or a half-written round while a real worker writes."""

from __future__ import annotations

import io
import multiprocessing
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import tiny_config_doc
from rich.console import Console

from engine.config.schema import resolve
from engine.run.runs import claim, create_run, effective_status, prepare, process_started
from engine.store.db import Store
from models.errors import StoreError

REPO = Path(__file__).resolve().parents[1]


def _tiny_run(tiny_gguf: Path, folder: Path, **loop: Any) -> tuple[Store, int]:
    cfg = resolve(tiny_config_doc(tiny_gguf, folder / "l2l.db", **loop))
    store = Store(cfg.store)
    return store, create_run(store, prepare(cfg))


def _bare_run(folder: Path) -> tuple[Store, int]:
    """A run row without data, for claim tests (no model is loaded)."""
    store = Store(folder / "l2l.db")
    return store, store.create_run("claims", "{}", "x", 0, {}, {}, {})


def _claim_in_child(path: str, run_id: int, barrier: Any, release: Any, results: Any) -> None:
    store = Store(path, create=False)
    barrier.wait()
    try:
        claim(store, "runs", run_id, "run")
        results.put(("won", os.getpid(), ""))
        release.wait(60)  # hold the claim while the others try
    except StoreError as err:
        results.put(("refused", os.getpid(), str(err)))


def test_claim_is_atomic_across_processes(tmp_path: Path) -> None:
    store, run_id = _bare_run(tmp_path)
    store.close()  # no connection crosses the fork
    ctx = multiprocessing.get_context("fork")
    n = 6
    barrier, release, results = ctx.Barrier(n), ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_claim_in_child, args=(str(store.path), run_id, barrier, release, results))
             for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(n)]
    release.set()
    for p in procs:
        p.join(60)
    winners = [o for o in outcomes if o[0] == "won"]
    assert len(winners) == 1, outcomes
    winner = winners[0][1]
    for kind, _, message in outcomes:
        if kind == "refused":
            assert f"run {run_id} is running in pid {winner};" in message
    assert Store(tmp_path / "l2l.db", create=False).run(run_id).pid == winner


def _read_then_write_in_child(path: str, barrier: Any, results: Any) -> None:
    store = Store(path, create=False)
    barrier.wait()
    try:
        for i in range(40):
            with store.transaction():  # read first, then write: what a sweep does when it creates a cell's run
                count = len(store.runs())
                store.create_run(f"p{os.getpid()}-{i}", "{}", "x", count, {}, {}, {})
        results.put("ok")
    except Exception as err:  # noqa: BLE001 - the parent reports what went wrong
        results.put(f"{type(err).__name__}: {err}")


def test_writers_in_several_processes_take_turns(tmp_path: Path) -> None:
    """Two sweeps (or runs) on one store: transactions that read before they write wait for the lock, never fail."""
    store = Store(tmp_path / "l2l.db")
    store.close()
    ctx = multiprocessing.get_context("fork")
    n = 4
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_read_then_write_in_child, args=(str(store.path), barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=120) for _ in range(n)]
    for p in procs:
        p.join(60)
    assert outcomes == ["ok"] * n
    assert len(Store(tmp_path / "l2l.db", create=False).runs()) == n * 40


def test_a_dead_claim_is_taken_over(tmp_path: Path) -> None:
    store, run_id = _bare_run(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    started = process_started(gone.pid)
    gone.wait()
    store.update_run(run_id, status="running", pid=gone.pid, pid_started=started, host=os.uname().nodename)
    assert effective_status(store.run(run_id)) == "crashed"
    claim(store, "runs", run_id, "run")
    assert store.run(run_id).pid == os.getpid()


def test_a_reused_pid_is_not_the_worker(tmp_path: Path) -> None:
    """The pid now names an unrelated live process that started after the claim: the claim is stale."""
    store, run_id = _bare_run(tmp_path)
    other = subprocess.Popen(["sleep", "60"])
    try:
        started = process_started(other.pid)
        assert started is not None
        store.update_run(run_id, status="running", pid=other.pid, pid_started=started, host=os.uname().nodename)
        assert effective_status(store.run(run_id)) == "running"
        with pytest.raises(StoreError, match=f"is running in pid {other.pid};"):
            claim(store, "runs", run_id, "run")
        store.update_run(run_id, pid_started=started - 3600.0)  # the claimant started an hour before this process
        assert effective_status(store.run(run_id)) == "crashed"
        claim(store, "runs", run_id, "run")
        assert store.run(run_id).pid == os.getpid() and psutil.pid_exists(other.pid)
    finally:
        other.kill()
        other.wait()


def test_two_resumes_started_together_leave_one_worker(tiny_gguf: Path, tmp_path: Path) -> None:
    store, run_id = _tiny_run(tiny_gguf, tmp_path)
    store.update_run(run_id, status="stopped")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("L2L_FAULT", None)
    cmd = [sys.executable, "-m", "l2l_tui.cli", "resume", str(run_id), "--store", str(store.path)]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600) for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 2], [o[1][-2000:] for o in outs]
    winner = next(p for p in procs if p.returncode == 0)
    loser_err = next(o[1] for p, o in zip(procs, outs, strict=True) if p.returncode == 2)
    assert "Traceback" not in loser_err
    named = re.search(r"pid (\d+)", loser_err)
    assert named and int(named.group(1)) == winner.pid, loser_err
    starts = [e for e in store.events(run_id) if e.message.startswith(f"run {run_id} started")]
    assert len(starts) == 1 and f"(pid {winner.pid})" in starts[0].message
    assert store.run(run_id).status == "finished"


def _consistent(store: Store, run_id: int, n_eval: int) -> None:
    """What a committed phase promises, read from one snapshot."""
    with store.snapshot():
        rounds = store.rounds(run_id)
        for r in rounds:
            idx, phase = r.idx, r.phase
            evaluated = phase in ("augment", "filter", "done")
            preds = store.count("predictions", run_id=run_id, round=idx)
            assert preds == (n_eval if evaluated else 0), (r, preds)
            if evaluated:
                assert r.val_acc is not None and r.seed_acc is not None
            made = store.count("examples", run_id=run_id, origin_round=idx)
            if phase in ("filter", "done") and r.generated is not None:
                assert made == r.generated, (r, made)
            elif phase in ("train", "eval", "augment"):
                assert made == 0, (r, made)
            if phase == "done" and r.kept is not None:
                kept = store.count("examples", run_id=run_id, origin_round=idx, status="kept")
                pending = store.count("examples", run_id=run_id, origin_round=idx, status="pending")
                assert (kept, pending) == (r.kept, 0), (r, kept, pending)
        for r in rounds:  # a filtered round and the next round's start are one commit
            if r.phase == "done" and r.kept is not None:
                assert r.idx + 1 < len(rounds), r


def test_readers_polling_hard_while_a_worker_writes(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.reports.run_report import run_summary, runs_table
    from l2l_tui.queries import ExampleFilter, dashboard_rounds, events_tail, filter_examples, filter_options, lineage, run_list

    store, run_id = _tiny_run(tiny_gguf, tmp_path)
    n_eval = store.count("examples", run_id=run_id)
    store.close()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("L2L_FAULT", None)
    worker = subprocess.Popen([sys.executable, "-m", "engine.run.worker", str(tmp_path / "l2l.db"), str(run_id)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    reads, phases, started = 0, set(), time.monotonic()
    sink = Console(file=io.StringIO(), width=160)
    while worker.poll() is None:
        st = Store(tmp_path / "l2l.db", create=False)  # as `l2l status` and each app query open it
        try:
            sink.print(runs_table(st))
            sink.print(run_summary(st, run_id))
            run_list(st)
            rows = dashboard_rounds(st, run_id)
            events_tail(st, run_id)
            filter_options(st, run_id)
            page, _, _ = filter_examples(st, run_id, ExampleFilter())
            filter_examples(st, run_id, ExampleFilter(split="synthetic", status="kept"))
            if page:
                lineage(st, page[0].id)
            _consistent(st, run_id, n_eval)
            phases.update(r["phase"] for r in rows)
            reads += 1
        finally:
            st.close()
    seconds = time.monotonic() - started
    assert worker.returncode == 0, worker.stderr.read()[-3000:]
    assert {"train", "eval", "augment", "filter", "done"} <= phases, "the readers saw every phase go by"
    print(f"{reads} reads ({reads * 9} queries) in {seconds:.0f}s while the worker ran")
    assert reads / seconds > 2, f"{reads} reads in {seconds:.0f}s"
    final = Store(tmp_path / "l2l.db", create=False)
    _consistent(final, run_id, n_eval)
    assert final.run(run_id).status == "finished"
