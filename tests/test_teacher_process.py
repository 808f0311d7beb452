"""The llama.cpp teacher in its own process: same replies as in this one, one clear error when it dies, gone with its parent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from models.errors import TeacherProcessError
from models.teacher.base import TeacherReply
from models.teacher.llama_cpp import LlamaCppTeacher
from models.teacher.own_process import ProcessTeacher
from tests.conftest import tiny_config_doc
from tests.test_teacher import requests

pytest.importorskip("llama_cpp")
ARGS = {"n_ctx": 2048, "parallel": 3, "n_threads": 1, "retries": 1, "seed": 0}


def gone(pid: int) -> bool:
    """The process has exited (a zombie waiting for its reaper counts as gone)."""
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] == "Z"
    except (FileNotFoundError, IndexError):
        return True


def test_a_teacher_in_its_own_process_answers_exactly_as_in_this_one(tiny_gguf: Path) -> None:
    reqs = requests(4, max_tokens=120)
    here = LlamaCppTeacher(tiny_gguf, **ARGS)  # type: ignore[arg-type]
    expected = here.generate(reqs)
    identity = here.identity()
    here.close()
    there = ProcessTeacher(tiny_gguf, **ARGS)
    streamed: list[TeacherReply] = []
    try:
        replies = there.generate(reqs, on_reply=streamed.append)
        assert there.identity() == identity
        assert there.info()["process"] == f"own (pid {there.pid})" and there.info()["mode"] == "batched"
        assert there.generate([]) == []
    finally:
        there.close()
    assert gone(there.pid)
    assert [(r.key, r.text, r.parsed, r.tokens_out, r.error) for r in replies] == \
        [(r.key, r.text, r.parsed, r.tokens_out, r.error) for r in expected]
    assert sorted(r.key for r in streamed) == sorted(r.key for r in reqs)  # each reply crossed back as it finished


def test_a_crash_of_the_teacher_process_is_one_clear_error(tiny_gguf: Path) -> None:
    teacher = ProcessTeacher(tiny_gguf, **ARGS)
    os.kill(teacher.pid, signal.SIGSEGV)
    with pytest.raises(TeacherProcessError, match=r"tiny\.gguf died while .*signal 11 \(SIGSEGV\)"):
        teacher.generate(requests(2))
    teacher.close()  # closing a dead teacher is quiet


def test_an_error_raised_by_the_teacher_there_is_raised_here_and_the_teacher_stays(tiny_gguf: Path) -> None:
    teacher = ProcessTeacher(tiny_gguf, **ARGS)
    try:
        with pytest.raises(AttributeError, match="has no attribute"):
            teacher.generate(["not a request"])  # type: ignore[list-item]
        reqs = requests(1, max_tokens=40)
        assert [r.key for r in teacher.generate(reqs)] == [reqs[0].key]
    finally:
        teacher.close()


def test_a_file_llama_cpp_cannot_load_fails_as_it_does_in_this_process(tmp_path: Path) -> None:
    bad = tmp_path / "not.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(Exception) as here:
        LlamaCppTeacher(bad, **ARGS)  # type: ignore[arg-type]
    with pytest.raises(type(here.value), match=str(here.value)[:40]):
        ProcessTeacher(bad, **ARGS)


def test_the_teacher_process_ends_with_its_parent_and_the_parent_never_loads_llama_cpp(tiny_gguf: Path) -> None:
    script = ("import sys, time\nfrom models.teacher.own_process import ProcessTeacher\n"
              f"t = ProcessTeacher({str(tiny_gguf)!r}, n_ctx=2048, parallel=2, n_threads=1)\n"
              "print(t.pid, 'llama_cpp' in sys.modules, flush=True)\ntime.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    assert parent.stdout is not None
    child, loaded = parent.stdout.readline().split()
    assert loaded == "False"
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 10
    while not gone(int(child)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert gone(int(child))


def test_a_run_with_its_teacher_in_its_own_process_writes_what_it_writes_in_one(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    written = {}
    for isolate in ("never", "always"):
        doc = tiny_config_doc(tiny_gguf, tmp_path / isolate / "l2l.db")
        doc["teacher"]["isolate"] = isolate
        cfg = resolve(doc)
        store = Store(cfg.store)
        run_id = create_run(store, prepare(cfg))
        assert Loop(store, run_id).run() == "finished"
        calls = store.db.execute("select key, response from teacher_calls order by key").fetchall()
        examples = store.db.execute("select split, input, target, status, reason from examples order by id").fetchall()
        written[isolate] = (calls, examples)
        store.close()
    assert written["always"][0] and written["always"] == written["never"]


def test_where_the_teacher_runs_follows_teacher_isolate_and_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    import models.device
    from models.params import TeacherParams
    from models.teacher import runs_in_own_process

    for gpu, layers, isolate, expected in [(True, -1, "auto", True), (False, -1, "auto", False), (True, 0, "auto", True),
                                           (False, -1, "always", True), (True, -1, "never", False)]:
        monkeypatch.setattr(models.device, "gpu_present", lambda gpu=gpu: gpu)
        assert runs_in_own_process(TeacherParams(n_gpu_layers=layers, isolate=isolate)) is expected  # type: ignore[arg-type]
