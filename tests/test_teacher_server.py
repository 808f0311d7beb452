"""The OpenAI-compatible teacher against a real server on loopback: llama-cpp-python's own server on the tiny GGUF."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import jsonschema
import pytest

from engine.config.schema import TeacherConfig
from models.teacher import open_teacher
from models.teacher.openai_http import OpenAITeacher, ServerError, server_models
from models.teacher.reply_json import loads_reply

pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
from tests.test_teacher import SCHEMA, requests  # noqa: E402

ALIAS = "tiny-teacher"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m llama_cpp.server` serving the tiny GGUF on 127.0.0.1; yields its /v1 URL."""
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(tiny_gguf), "--model_alias", ALIAS,
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "8192", "--n_threads", "1"],
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                server_models(url, timeout=2)
                break
            except ServerError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llama_cpp.server did not start:\n{log.read_text()[-2000:]}") from None
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def teacher(server: str) -> Iterator[OpenAITeacher]:
    client = OpenAITeacher(server, ALIAS, parallel=3, retries=2)
    yield client
    client.close()


def test_parallel_requests_are_schema_valid_in_order_and_streamed(teacher: OpenAITeacher) -> None:
    reqs = requests(6)
    streamed: list[str] = []
    replies = teacher.generate(reqs, on_reply=lambda r: streamed.append(r.key))
    assert [r.key for r in replies] == [q.key for q in reqs] and sorted(streamed) == sorted(q.key for q in reqs)
    for reply in replies:
        assert reply.error is None, reply.error
        assert reply.parsed == loads_reply(reply.text)
        jsonschema.validate(reply.parsed, SCHEMA)
        assert reply.tokens_in > 20 and reply.tokens_out > 5 and reply.attempts >= 1
    # llama-cpp-python's server refuses OpenAI's json_schema form: auto mode switched to its json_object + schema form.
    assert teacher.response_format == "json_object"


def test_same_seed_same_output_and_a_new_seed_differs(teacher: OpenAITeacher) -> None:
    reqs = requests(3)
    first = [r.text for r in teacher.generate(reqs)]
    assert [r.text for r in teacher.generate(reqs)] == first
    reseeded = [type(q)(**{**vars(q), "seed": q.seed + 1}) for q in reqs]
    assert [r.text for r in teacher.generate(reseeded)] != first


def test_retries_are_bounded_as_in_process(teacher: OpenAITeacher) -> None:
    for reply in teacher.generate(requests(2, max_tokens=6)):  # the JSON cannot close in 6 tokens: every attempt is cut
        assert reply.parsed is None and "max_tokens=6" in (reply.error or "")
        assert reply.attempts == teacher.retries + 1 and reply.tokens_out == 6 * reply.attempts
    greedy = teacher.generate(requests(1, max_tokens=6, temperature=0.0))[0]
    assert greedy.error is not None and greedy.attempts == 1


def test_info_names_the_endpoint_and_the_served_model(server: str, teacher: OpenAITeacher) -> None:
    info = teacher.info()
    assert info["base_url"] == server and info["server_model"] == ALIAS and ALIAS in info["server_models"]
    assert teacher.identity() == f"openai:{server}:{ALIAS}"


def test_the_grammar_form_sends_the_teachers_own_gbnf(server: str) -> None:
    grammar = OpenAITeacher(server, ALIAS, parallel=2, retries=2, response_format="grammar")
    replies = grammar.generate(requests(2))
    for reply in replies:
        assert reply.error is None, reply.error
        jsonschema.validate(reply.parsed, SCHEMA)
    assert grammar.info()["response_format"] == "grammar" and grammar.identity().endswith(":latex-escapes")
    grammar.close()


def test_factory_passes_the_response_format(server: str) -> None:
    forced = open_teacher(TeacherConfig(backend="openai", base_url=server, model=ALIAS, response_format="json_schema",
                                        retries=0).params(), None, seed=0)
    reply = forced.generate(requests(1))[0]
    assert reply.parsed is None and "HTTP" in (reply.error or "") and reply.attempts == 1  # a refused form is not retried
    forced.close()


def test_unreachable_endpoint_is_an_error_reply_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1"
    client = OpenAITeacher(url, "m", parallel=2, retries=1, timeout=5)
    replies = client.generate(requests(2))
    assert all(r.parsed is None and r.attempts == 2 and url in (r.error or "") for r in replies)
    assert client.info()["server_model"] is None and client.info()["server_error"]
    client.close()


def test_loop_with_the_server_teacher_records_it_and_caches_calls(server: str, tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store
    from tests.conftest import tiny_config_doc

    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db", rounds=2)
    doc["teacher"] = {**doc["teacher"], "backend": "openai", "base_url": server, "model": ALIAS, "parallel": 3}
    doc["checks"] = {"verify": False}
    cfg = resolve(doc)
    store = Store(cfg.store)
    first = create_run(store, prepare(cfg))
    assert Loop(store, first).run() == "finished"
    teacher = store.run(first).teacher
    assert teacher["backend"] == "openai" and teacher["base_url"] == server and teacher["server_model"] == ALIAS
    calls = store.count("teacher_calls")
    assert calls > 0 and store.count("teacher_calls", ok=1) > 0
    again = create_run(store, prepare(cfg))  # the same config again: every teacher call is answered from the store
    assert Loop(store, again).run() == "finished"
    assert store.count("teacher_calls") == calls
    augment = store.round(again, 0).augment
    assert augment["requests"] > 0 and augment["cache_hits"] == augment["requests"]
    store.close()


def test_doctor_checks_the_configured_endpoint(server: str, tmp_path: Path) -> None:
    from rich.console import Console

    from engine.config.schema import resolve
    from engine.tools.doctor import endpoint_rows

    ok = endpoint_rows(resolve({"teacher": {"backend": "openai", "base_url": server, "model": ALIAS}}))
    missing = endpoint_rows(resolve({"teacher": {"backend": "openai", "base_url": server, "model": "other"}}))
    down = endpoint_rows(resolve({"teacher": {"backend": "openai", "base_url": f"http://127.0.0.1:{_free_port()}/v1"}}))
    console = Console(width=200, record=True)
    for rows in (ok, missing, down):
        for check, finding in rows:
            console.print(f"{check} | {finding}")
    text = console.export_text()
    assert f"serves {ALIAS}" in text and "other is not among" in text and "does not answer" in text
