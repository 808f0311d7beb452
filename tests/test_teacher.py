"""Teacher backends on the tiny random GGUF (grammar makes even random weights write schema-valid JSON)."""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from engine.config.schema import TeacherConfig
from models.errors import ConfigError, ModelNotFoundError
from models.teacher import open_teacher
from models.teacher.base import TeacherReply, TeacherRequest

pytest.importorskip("llama_cpp")
from models.teacher.llama_cpp import LlamaCppTeacher  # noqa: E402

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"examples": {"type": "array", "minItems": 1, "maxItems": 2, "items": {
        "type": "object",
        "properties": {"question": {"type": "string", "minLength": 1, "maxLength": 40},
                       "answer": {"type": "string", "minLength": 1, "maxLength": 8}},
        "required": ["question", "answer"], "additionalProperties": False}}},
    "required": ["examples"], "additionalProperties": False,
}
SYSTEM = ("You write new training examples for a small model. The task: grade-school math word problems whose "
          "answer is a number. Keep the numbers small. Reply with JSON only, following the schema.")


def requests(n: int, *, temperature: float = 0.8, max_tokens: int = 240, schema: dict[str, Any] = SCHEMA) -> list[TeacherRequest]:
    """n requests sharing the system message, each about a different miss."""
    return [TeacherRequest(key=f"k{i}", messages=[{"role": "system", "content": SYSTEM},
                                                  {"role": "user", "content": f"The student missed problem {i}: Tom has {i} apples."}],
                           schema=schema, max_tokens=max_tokens, temperature=temperature, top_p=0.95, seed=100 + i)
            for i in range(n)]


@pytest.fixture(scope="module")
def batched(tiny_gguf: Path) -> LlamaCppTeacher:
    teacher = LlamaCppTeacher(tiny_gguf, n_ctx=2048, parallel=3, n_threads=1, retries=2, seed=0)
    yield teacher
    teacher.close()


@pytest.fixture(scope="module")
def sequential(tiny_gguf: Path) -> LlamaCppTeacher:
    teacher = LlamaCppTeacher(tiny_gguf, n_ctx=2048, parallel=1, n_threads=1, retries=2, seed=0)
    yield teacher
    teacher.close()


def assert_valid(replies: list[TeacherReply], reqs: list[TeacherRequest]) -> None:
    assert [r.key for r in replies] == [q.key for q in reqs]
    for reply in replies:
        assert reply.error is None, reply.error
        assert reply.parsed == json.loads(reply.text)
        jsonschema.validate(reply.parsed, SCHEMA)
        assert reply.tokens_in > 20 and reply.tokens_out > 5 and reply.attempts >= 1


def test_batched_replies_are_schema_valid_in_order_and_streamed(batched: LlamaCppTeacher) -> None:
    reqs = requests(6)
    streamed: list[str] = []
    replies = batched.generate(reqs, on_reply=lambda r: streamed.append(r.key))
    assert_valid(replies, reqs)
    assert sorted(streamed) == sorted(q.key for q in reqs)
    assert batched.decoder is not None and batched.decoder.stats["prefix_tokens"] >= 20  # shared prompt reused


def test_sequential_path_is_schema_valid(sequential: LlamaCppTeacher) -> None:
    reqs = requests(2)
    assert_valid(sequential.generate(reqs), reqs)


def test_same_seed_same_output(batched: LlamaCppTeacher, tiny_gguf: Path) -> None:
    reqs = requests(4)
    first = [r.text for r in batched.generate(reqs)]
    assert [r.text for r in batched.generate(reqs)] == first
    other = LlamaCppTeacher(tiny_gguf, n_ctx=2048, parallel=3, n_threads=1)
    assert [r.text for r in other.generate(reqs)] == first
    other.close()
    reseeded = [TeacherRequest(**{**vars(q), "seed": q.seed + 1}) for q in reqs]
    assert [r.text for r in batched.generate(reseeded)] != first


def test_greedy_batched_equals_sequential_create_chat_completion(batched: LlamaCppTeacher, sequential: LlamaCppTeacher,
                                                                 tiny_gguf: Path) -> None:
    schema = json.loads(json.dumps(SCHEMA))
    schema["properties"]["examples"]["maxItems"] = 1
    reqs = requests(3, temperature=0.0, max_tokens=200, schema=schema)
    seq = sequential.generate(reqs)
    bat = batched.generate(reqs)
    assert all(r.error is None for r in seq + bat)
    # The tiny model's logits do not depend on batch composition beyond float rounding, so greedy picks agree.
    assert [r.text for r in bat] == [r.text for r in seq]
    strict = LlamaCppTeacher(tiny_gguf, n_ctx=2048, parallel=3, n_threads=1, grammar_first=True)
    assert [r.text for r in strict.generate(reqs)] == [r.text for r in bat]  # checking the pick first changes nothing
    strict.close()


@pytest.mark.parametrize("which", ["batched", "sequential"])
def test_retries_are_bounded(which: str, request: pytest.FixtureRequest) -> None:
    teacher: LlamaCppTeacher = request.getfixturevalue(which)
    reqs = requests(2, max_tokens=6)  # '{"examples": [' alone takes more: every attempt is cut
    replies = teacher.generate(reqs)
    for reply in replies:
        assert reply.parsed is None and reply.error is not None and "max_tokens=6" in reply.error
        assert reply.attempts == teacher.retries + 1
        assert reply.tokens_out == 6 * reply.attempts
    greedy = teacher.generate(requests(1, max_tokens=6, temperature=0.0))[0]
    assert greedy.error is not None and greedy.attempts == 1  # a greedy retry would repeat itself


@pytest.mark.parametrize("parallel", [2, 1])
def test_prompt_longer_than_context_is_an_error_reply(parallel: int, tiny_gguf: Path) -> None:
    teacher = LlamaCppTeacher(tiny_gguf, n_ctx=512, parallel=parallel, n_threads=1)
    long = TeacherRequest(key="long", messages=[{"role": "user", "content": "x " * 400}], schema=SCHEMA, max_tokens=50,
                          temperature=0.5, top_p=1.0, seed=1)
    ok = requests(1, max_tokens=250)[0]
    replies = teacher.generate([long, ok])
    assert "exceed" in (replies[0].error or "") and replies[0].attempts == 1
    assert replies[1].error is None
    teacher.close()


def test_identity_and_info(batched: LlamaCppTeacher, sequential: LlamaCppTeacher, tiny_gguf: Path) -> None:
    digest = hashlib.sha256(tiny_gguf.read_bytes()).hexdigest()
    assert batched.identity() == batched.identity() and digest in batched.identity()
    assert "n_ctx=2048" in batched.identity()
    info = batched.info()
    assert info["n_ctx"] == 2048 and info["parallel"] == 3 and info["mode"] == "batched"
    assert info["chat_template"] == "gguf:tokenizer.chat_template" and info["n_layer"] == 2
    assert isinstance(info["n_gpu_layers_offloaded"], int)
    assert sequential.info()["parallel"] == 1 and sequential.info()["n_ctx"] == 2048
    from engine.run.model_slots import describe_teacher

    # the run's teacher line says how its threads were chosen (issue 30), as the student's line does
    assert f"threads {info['threads_chosen']}" in describe_teacher(info) and info["threads_chosen"] == "1 thread (set in the config)"


def test_grammar_keeps_raw_control_characters_out_of_strings() -> None:
    from models.teacher.grammar import schema_grammar

    grammar = schema_grammar(SCHEMA)
    assert r'char ::= [^"\\\x7F\x00-\x1F]' in grammar  # JSON forbids raw newlines etc. inside strings


def test_open_teacher_factory(tiny_gguf: Path) -> None:
    cfg = TeacherConfig(model=str(tiny_gguf), n_ctx=512, parallel=2, n_threads=1)
    teacher = open_teacher(cfg, tiny_gguf, seed=0)
    assert teacher.info()["parallel"] == 2
    teacher.close()
    with pytest.raises(ModelNotFoundError, match="missing.gguf"):
        open_teacher(cfg, tiny_gguf.parent / "missing.gguf", seed=0)
    with pytest.raises(ConfigError, match="base_url"):
        open_teacher(TeacherConfig(backend="openai"), None, seed=0)


# OpenAI-compatible client against a canned local server: HTTP 500s and cut replies on demand (the real server is in
# test_teacher_server.py).
class _Canned(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with self.lock:
            self.seen.append(body)
            n = sum(1 for b in self.seen if b["messages"] == body["messages"])
        user = body["messages"][-1]["content"]
        if "broken" in user:
            self.send_response(500)
            self.end_headers()
            self.wfile.write(b"boom")
            return
        # The first attempt of every request is cut short; the retry answers properly.
        content, reason = ('{"examples": [{"question": "Tom has', "length") if n == 1 else (
            json.dumps({"examples": [{"question": user[:40], "answer": "3"}]}), "stop")
        payload = {"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": reason}],
                   "usage": {"prompt_tokens": 30, "completion_tokens": 12}}
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_openai_http_client_retries_and_keeps_order() -> None:
    from models.teacher.openai_http import OpenAITeacher

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Canned)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        teacher = OpenAITeacher(url, "qwen", parallel=3, retries=1)
        reqs = requests(4) + [TeacherRequest(key="bad", messages=[{"role": "user", "content": "broken"}], schema=SCHEMA,
                                             max_tokens=50, temperature=0.5, top_p=1.0, seed=0)]
        streamed: list[str] = []
        replies = teacher.generate(reqs, on_reply=lambda r: streamed.append(r.key))
        assert [r.key for r in replies] == [q.key for q in reqs] and len(streamed) == 5
        for reply in replies[:4]:
            assert reply.error is None and reply.attempts == 2 and reply.tokens_out == 24
            jsonschema.validate(reply.parsed, SCHEMA)
        assert "HTTP 500" in (replies[4].error or "") and replies[4].attempts == 2
        sent = _Canned.seen[0]
        assert sent["response_format"]["json_schema"]["schema"] == SCHEMA and sent["model"] == "qwen"
        assert len({b["seed"] for b in _Canned.seen if b["messages"] == reqs[0].messages}) == 2  # retry reseeded
        assert teacher.identity() == f"openai:{url}:qwen"
    finally:
        server.shutdown()
