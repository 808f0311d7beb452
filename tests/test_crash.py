"""Crash safety on real parts: kill -9 at every phase boundary and inside every phase (training step, evaluation batch,
teacher replies, verification replies, adapter save, the run's last step), then `resume`: the store ends as an
uninterrupted run's (examples, lineage, metrics, teacher calls), and no committed teacher call is paid again.
SIGTERM and Ctrl-C stop at the next safe point. The uninterrupted reference runs once per module, as a detached worker
with sockets blocked (tests/test_privacy.py checks what it left)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import tiny_config_doc

from engine.config.schema import resolve
from engine.run.loop import Loop
from engine.run.runs import create_run, effective_status, prepare
from engine.store.db import Store

REPO = Path(__file__).resolve().parents[1]
SOCKET_BLOCK = '''
import json, os, socket
_log = os.environ.get("L2L_SOCKET_LOG")
def _refuse(*args, **kwargs):
    if _log:
        with open(_log, "a") as fh:
            fh.write(json.dumps([str(a) for a in args[1:3]]) + "\\n")
    raise OSError("network access is blocked in this test")
socket.socket.__init__ = _refuse
socket.socketpair = _refuse
socket.create_connection = _refuse
socket.getaddrinfo = _refuse
'''


def crash_config(tiny_gguf: Path, store: Path, parallel: int = 1, isolate: str = "auto") -> Any:
    """The tiny 2-round run with verification on (shown one seed per label) and the requested-label check off, so that
    some candidates survive the filter and round 1 trains on synthetic examples. The teacher decodes one request at a time: llama.cpp's batched
    decoding is not batch-invariant (a sequence's logits move by ~1e-3 with its batch-mates' KV cells), so only the
    sequential decoder makes a reply regenerated after a crash equal to the one the uninterrupted run sampled."""
    doc = tiny_config_doc(tiny_gguf, store)
    doc["checks"] = {"requested_label": False, "label_balance": 0, "verify_shots": 1}
    doc["teacher"]["parallel"] = parallel
    doc["teacher"]["isolate"] = isolate
    doc["loop"]["examples_per_miss"] = 1
    return resolve(doc)


def new_run(tiny_gguf: Path, folder: Path, parallel: int = 1, isolate: str = "auto") -> tuple[Store, int]:
    cfg = crash_config(tiny_gguf, folder / "l2l.db", parallel, isolate)
    store = Store(cfg.store)
    return store, create_run(store, prepare(cfg))


def fingerprint(store: Store, run_id: int) -> dict[str, Any]:
    """Everything a run produced that must not depend on crashes: examples with lineage, metrics, predictions, calls."""
    by_id = {r.id: r for r in store.examples(run_id)}
    synthetic = sorted((r.input, r.answer, r.status, r.reason or "", r.origin_round,
                        by_id[r.parent_id].input) for r in by_id.values() if r.split == "synthetic")
    rounds = [(r.idx, r.phase, r.train_size, r.misses, r.generated, r.kept, r.rejected,
               r.seed_acc, r.val_acc, r.test_acc, round(r.train_loss or 0, 6),
               r.filter.get("reasons")) for r in store.rounds(run_id)]
    predictions = sorted((p.round, by_id[p.example_id].input, p.split, p.extracted, p.correct,
                          round(p.confidence or 0, 6)) for p in store.predictions(run_id))
    calls = {row[0]: row[1] for row in store.db.execute(
        "SELECT purpose, COUNT(*) FROM teacher_calls WHERE run_id = ? GROUP BY purpose", [run_id])}
    run = store.run(run_id)
    return {"synthetic": synthetic, "rounds": rounds, "predictions": predictions, "teacher_calls": calls,
            "best_round": run.best_round, "status": run.status}


def calls_paid(store: Store, run_id: int) -> dict[str, str]:
    """Each committed teacher call of the run and when it was paid."""
    return {r["key"]: r["created"] for r in store.db.query("SELECT key, created FROM teacher_calls WHERE run_id = ?", [run_id])}


# The workers the faults kill are forked from a server that imported torch, transformers, peft and llama.cpp once
# (a fresh interpreter per kill point would spend most of its time importing).
PRELOAD = ["engine.run.worker", "engine.run.loop", "torch", "transformers", "peft", "llama_cpp", "models.student",
           "models.student_train", "models.student_score", "models.teacher.llama_cpp", "models.convert"]


def _worker_main(store: str, run_id: int, fault: str | None, log: str) -> None:
    """engine.run.worker's main in a forked child, its stdout and stderr sent to `log`, L2L_FAULT set to `fault`."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.environ.pop("L2L_FAULT", None)
    if fault:
        os.environ["L2L_FAULT"] = fault
    from engine.run.worker import main

    code = 1
    try:
        code = main([store, str(run_id)])
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@pytest.fixture(scope="module")
def forkserver() -> Any:
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def worker(ctx: Any, store: Path, run_id: int, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run (or resume) the run in a worker process until it ends or the fault kills it."""
    log = Path(store).parent / f"worker-{time.monotonic_ns()}.out"
    proc = ctx.Process(target=_worker_main, args=(str(store), run_id, fault, str(log)))
    proc.start()
    proc.join(600)
    output = log.read_text(encoding="utf-8", errors="replace")
    log.unlink()
    return subprocess.CompletedProcess([], proc.exitcode, output, output)


@pytest.fixture(scope="module")
def reference(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted run: a detached worker (as the app starts it) whose Python cannot open a socket."""
    from engine.run.worker import spawn_worker

    folder = tmp_path_factory.mktemp("reference")
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SOCKET_BLOCK, encoding="utf-8")
    sockets = folder / "sockets.log"
    store, run_id = new_run(tiny_gguf, folder / "store")
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "L2L_SOCKET_LOG", "L2L_FAULT")}
    os.environ.update(PYTHONPATH=f"{site}{os.pathsep}{REPO}", L2L_SOCKET_LOG=str(sockets))
    os.environ.pop("L2L_FAULT", None)
    try:
        pid = spawn_worker(store.path, run_id)
        code = psutil.Process(pid).wait(timeout=600)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return {"store": store, "run_id": run_id, "exit": code, "sockets": sockets, "site": site,
            "fingerprint": fingerprint(store, run_id)}


def test_reference_run_is_worth_comparing(reference: dict[str, Any]) -> None:
    """The reference reaches every kill point below: teacher calls, kept candidates, verification, two rounds."""
    fp = reference["fingerprint"]
    assert reference["exit"] == 0 and fp["status"] == "finished"
    assert fp["teacher_calls"]["write"] >= 3 and fp["teacher_calls"]["verify"] >= 2
    prompts = [json.loads(r["prompt"])[-1]["content"] for r in reference["store"].db.query(
        "SELECT prompt FROM teacher_calls WHERE run_id = ? AND purpose = 'verify'", [reference["run_id"]])]
    assert all("Real examples with their correct labels:\n- negative: " in p for p in prompts), "verify_shots reach the call"
    r0, r1 = fp["rounds"]
    assert r0[5] > 0 and r1[2] == r0[2] + r0[5], "round 1 trains on round 0's kept examples"


# (fault, round, phase the round must still be in after the kill: the phase in flight was not committed)
KILL_POINTS = [
    ("train:0:step1", 0, "train"),        # mid training (after step 1 of 4)
    ("train:0:step3", 0, "train"),
    ("train:0:save", 0, "train"),         # adapter weights half-written
    ("train:0", 0, "train"),              # adapter saved, phase not committed
    ("train:0:done", 0, "eval"),          # phase boundary
    ("eval:0:batch1", 0, "eval"),         # mid evaluation
    ("eval:0", 0, "eval"),
    ("eval:0:done", 0, "augment"),
    ("augment:0:unsaved1", 0, "augment"),  # first teacher reply back, not committed
    ("augment:0:reply1", 0, "augment"),    # between teacher replies
    ("augment:0:unsaved3", 0, "augment"),
    ("augment:0:reply3", 0, "augment"),
    ("augment:0", 0, "augment"),           # every reply committed, candidates not
    ("augment:0:done", 0, "filter"),
    ("verify:0:unsaved1", 0, "filter"),    # the filter's blind verification calls
    ("verify:0:reply2", 0, "filter"),
    ("filter:0", 0, "filter"),
    ("filter:0:done", 1, "train"),
    ("train:1:step2", 1, "train"),
    ("train:1:save", 1, "train"),
    ("train:1:done", 1, "eval"),
    ("eval:1:batch2", 1, "eval"),
    ("eval:1", 1, "eval"),
    ("report:0", 1, "done"),               # every round done, the run not yet marked finished
]


@pytest.mark.parametrize("fault, idx, phase", KILL_POINTS, ids=[k[0] for k in KILL_POINTS])
def test_kill_then_resume_gives_the_uninterrupted_store(fault: str, idx: int, phase: str, tiny_gguf: Path,
                                                        tmp_path: Path, reference: dict[str, Any], forkserver: Any) -> None:
    store, run_id = new_run(tiny_gguf, tmp_path)
    proc = worker(forkserver, store.path, run_id, f"{fault}:kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert effective_status(store.run(run_id)) == "crashed"
    assert store.round(run_id, idx).phase == phase, "the phase in flight was not committed"
    if fault.endswith(":save"):
        leftovers = list((tmp_path / "runs" / str(run_id) / f"round-{idx}").glob(".adapter-*"))
        assert leftovers and not (tmp_path / "runs" / str(run_id) / f"round-{idx}" / "adapter").exists(), \
            "a half-written adapter never carries the adapter's name"
    paid = calls_paid(store, run_id)
    if fault.startswith(("augment:0:unsaved", "augment:0:reply")):
        n = int(re.search(r"(\d+)$", fault).group(1))
        assert len(paid) == (n - 1 if "unsaved" in fault else n), "each reply is committed as it arrives"
    assert Loop(store, run_id).run() == "finished"
    assert fingerprint(store, run_id) == reference["fingerprint"]
    after = calls_paid(store, run_id)
    assert {k: after[k] for k in paid} == paid, "a committed teacher call was paid again"
    assert not list((tmp_path / "runs" / str(run_id)).glob("round-*/.adapter-*")), "resume cleans a torn save"


@pytest.mark.parametrize("how", ["term", "int"])
def test_sigterm_and_ctrl_c_stop_at_the_next_safe_point(how: str, tiny_gguf: Path, tmp_path: Path,
                                                        reference: dict[str, Any], forkserver: Any) -> None:
    """The signal arrives while the teacher's first reply is being committed: the worker finishes that commit, stops
    before the next reply, exits 0 as 'stopped'; resume pays only the replies it lacks."""
    store, run_id = new_run(tiny_gguf, tmp_path)
    proc = worker(forkserver, store.path, run_id, f"augment:0:reply1:{how}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"SIG{how.upper()}: stopping at the next safe point" in proc.stderr
    assert store.run(run_id).status == "stopped" and store.round(run_id, 0).phase == "augment"
    paid = calls_paid(store, run_id)
    assert len(paid) == 1
    events = [e.message for e in store.events(run_id)]
    assert any(m.startswith(f"stopped at a safe point after SIG{how.upper()}") for m in events)
    assert Loop(store, run_id).run() == "finished"
    assert fingerprint(store, run_id) == reference["fingerprint"]
    assert {k: calls_paid(store, run_id)[k] for k in paid} == paid


def test_sigterm_from_outside_mid_training_stops_at_a_step(tiny_gguf: Path, tmp_path: Path,
                                                           reference: dict[str, Any]) -> None:
    """A real SIGTERM sent by another process while round 0 trains."""
    store, run_id = new_run(tiny_gguf, tmp_path)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("L2L_FAULT", None)
    proc = subprocess.Popen([sys.executable, "-m", "engine.run.worker", str(store.path), str(run_id)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        progress = store.progress(run_id)
        if progress and progress.phase in ("train", "eval"):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert store.run(run_id).status == "stopped"
    assert Loop(store, run_id).run() == "finished"
    assert fingerprint(store, run_id) == reference["fingerprint"]


def test_batched_teacher_killed_between_replies_pays_nothing_twice(tiny_gguf: Path, tmp_path: Path,
                                                                  forkserver: Any) -> None:
    """With batched decoding the replies regenerated after a crash may differ in text (see crash_config), but what was
    committed is kept, nothing is paid twice, and every miss gets exactly one write call."""
    store, run_id = new_run(tiny_gguf, tmp_path, parallel=4)
    proc = worker(forkserver, store.path, run_id, "augment:0:reply2:kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    paid = calls_paid(store, run_id)
    assert len(paid) == 2
    assert Loop(store, run_id).run() == "finished"
    after = calls_paid(store, run_id)
    assert {k: after[k] for k in paid} == paid
    r0 = store.round(run_id, 0)
    assert store.count("teacher_calls", run_id=run_id, round=0, purpose="write") == r0.misses
    keys = {r.teacher_call for r in store.examples(run_id, split="synthetic")}
    assert keys <= set(after) and len(store.examples(run_id, split="synthetic")) == r0.generated


def teacher_processes() -> list[int]:
    """Live teacher processes of this machine (models/teacher/own_process.py), zombies not counted."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if "models.teacher.own_process" in (proc.info["cmdline"] or []) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


def test_a_worker_killed_while_its_teacher_runs_in_its_own_process_leaves_no_teacher_and_resumes(
        tiny_gguf: Path, tmp_path: Path, reference: dict[str, Any], forkserver: Any) -> None:
    """kill -9 between two replies of a teacher in its own process (how CUDA machines run it): the teacher process
    ends with the worker, and the resumed run is the uninterrupted in-process one."""
    store, run_id = new_run(tiny_gguf, tmp_path, isolate="always")
    proc = worker(forkserver, store.path, run_id, "augment:0:reply1:kill")
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    assert len(calls_paid(store, run_id)) == 1
    deadline = time.monotonic() + 10
    while teacher_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not teacher_processes(), "the teacher process outlived its worker"
    assert Loop(store, run_id).run() == "finished"
    assert fingerprint(store, run_id) == reference["fingerprint"]


def test_full_disk_mid_run_fails_clearly_and_the_store_resumes(tiny_gguf: Path, tmp_path: Path,
                                                               reference: dict[str, Any]) -> None:
    """A file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) makes writes fail as on a full disk while the worker runs."""
    import resource

    store, run_id = new_run(tiny_gguf, tmp_path)
    store.close()
    limit = 160 * 1024  # the store's WAL reaches it during round 0

    def small_disk() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("L2L_FAULT", None)
    proc = subprocess.run([sys.executable, "-m", "engine.run.worker", str(tmp_path / "l2l.db"), str(run_id)], env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=small_disk)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: run {run_id} failed: disk full while writing") and "l2l resume" in last, last
    assert "Traceback" not in proc.stderr
    store = Store(tmp_path / "l2l.db", create=False)
    assert store.db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert effective_status(store.run(run_id)) in ("failed", "crashed")
    assert Loop(store, run_id).run() == "finished"
    assert fingerprint(store, run_id) == reference["fingerprint"]


# --- privacy and isolation, on what the reference worker left --------------------------------------------------------
def test_the_socket_block_is_real(reference: dict[str, Any], tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(reference["site"]), "L2L_SOCKET_LOG": str(tmp_path / "s.log")}
    proc = subprocess.run([sys.executable, "-c", "import socket; socket.create_connection(('127.0.0.1', 9))"], env=env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "network access is blocked" in proc.stderr
    assert (tmp_path / "s.log").exists()


def test_a_whole_run_opens_no_socket(reference: dict[str, Any]) -> None:
    assert reference["exit"] == 0 and reference["fingerprint"]["status"] == "finished"
    assert not reference["sockets"].exists(), reference["sockets"].read_text()


def test_store_logs_adapters_and_folders_are_the_owners_only(reference: dict[str, Any]) -> None:
    folder = reference["store"].path.parent
    seen = {"dirs": 0, "files": 0}
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if path.is_dir():
            assert mode == 0o700, (path, oct(mode))
            seen["dirs"] += 1
        else:
            assert mode == 0o600, (path, oct(mode))
            seen["files"] += 1
    names = {p.name for p in folder.rglob("*")}
    assert {"l2l.db", "worker.log", "adapter_model.safetensors", "adapter_config.json", "config.toml"} <= names
    assert seen["dirs"] >= 5


def test_the_worker_log_holds_nothing_beyond_the_store(reference: dict[str, Any]) -> None:
    """Each log line is an event the store holds, or holds no text of the data (the pool's unused rows included)."""
    store, run_id = reference["store"], reference["run_id"]
    from engine.run.worker import worker_log

    events = {e.message for e in store.events(run_id, limit=100_000)}
    texts = [json.loads(line)["text"] for line in (REPO / "tests/fixtures/rotten_tomatoes_20.jsonl").read_text(
        encoding="utf-8").splitlines()]
    prompts = [m["content"] for r in store.db.query("SELECT prompt FROM teacher_calls WHERE run_id = ?", [run_id])
               for m in json.loads(r["prompt"])]
    lines = [line for line in worker_log(store.path, run_id).read_text(encoding="utf-8").splitlines() if line.strip()]
    assert sum(line in events for line in lines) >= 10
    for line in lines:
        if line in events:
            continue
        for text in texts + prompts:
            for start in range(0, max(1, len(text) - 30), 30):
                assert text[start:start + 30] not in line, (line, text)
