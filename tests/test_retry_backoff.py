"""The OpenAI-compatible teacher backs off a busy server: a real loopback HTTP server answering 429 and 503."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from models.teacher.base import TeacherRequest, attempt_seed
from models.teacher.openai_http import OpenAITeacher, retry_after_seconds
from models.teacher.retry import Backoff

SCHEMA: dict[str, Any] = {"type": "object", "properties": {"label": {"type": "string"}}, "required": ["label"]}
REPLY = {"label": "positive"}

# (status, headers) per request in arrival order; past the end the last one repeats. 200 sends a valid completion.
Script = list[tuple[int, dict[str, str]]]


@contextmanager
def server(script: Script) -> Iterator[tuple[str, list[tuple[float, dict[str, Any]]]]]:
    """A chat-completions endpoint on 127.0.0.1 that answers as `script` says; yields its URL and what it received
    (arrival time, body)."""
    seen: list[tuple[float, dict[str, Any]]] = []
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                seen.append((time.monotonic(), body))
                status, headers = script[min(len(seen), len(script)) - 1]
            if status == 200:
                data = json.dumps({"choices": [{"message": {"role": "assistant", "content": json.dumps(REPLY)},
                                                "finish_reason": "stop"}],
                                   "usage": {"prompt_tokens": 11, "completion_tokens": 5}}).encode()
            else:
                data = json.dumps({"error": {"message": "busy", "code": status}}).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/v1", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def request(temperature: float = 0.7) -> TeacherRequest:
    return TeacherRequest(key="k", messages=[{"role": "user", "content": "Write one review."}], schema=SCHEMA,
                          max_tokens=32, temperature=temperature, top_p=1.0, seed=41)


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.monotonic()
    out = call()
    return out, time.monotonic() - t0


def gaps(seen: list[tuple[float, dict[str, Any]]]) -> list[float]:
    return [b[0] - a[0] for a, b in zip(seen, seen[1:], strict=False)]


def test_a_429_with_retry_after_is_waited_out_and_the_next_reply_used() -> None:
    with server([(429, {"Retry-After": "1"}), (200, {})]) as (url, seen):
        teacher = OpenAITeacher(url, "m", parallel=1, retries=2, backoff=Backoff(jitter=0.2))
        [reply] = teacher.generate([request()])
        teacher.close()
    assert reply.error is None and reply.parsed == REPLY and reply.attempts == 2 and reply.tokens_out == 5
    assert len(seen) == 2 and 1.0 <= gaps(seen)[0] < 1.0 + 0.2 + 0.5  # the server's second, plus jitter, not the backoff's
    # the per-attempt seed rule holds across a backoff: attempt n is sent attempt_seed(seed, n)
    assert [body["seed"] for _, body in seen] == [attempt_seed(41, 0), attempt_seed(41, 1)]


def test_a_greedy_request_is_retried_after_a_429_too() -> None:
    """A greedy reply is not retried (it would repeat itself), but a busy server sampled nothing: that try is retried."""
    with server([(429, {"Retry-After": "0"}), (200, {})]) as (url, seen):
        teacher = OpenAITeacher(url, "m", parallel=1, retries=1, backoff=Backoff(jitter=0.0))
        [reply] = teacher.generate([request(temperature=0.0)])
        teacher.close()
    assert reply.error is None and reply.parsed == REPLY and reply.attempts == 2 and len(seen) == 2


def test_a_server_that_keeps_answering_503_is_left_after_the_count_bound_with_growing_waits() -> None:
    with server([(503, {})]) as (url, seen):
        teacher = OpenAITeacher(url, "m", parallel=1, retries=3, backoff=Backoff(initial=0.1, cap=10.0, jitter=0.0))
        [reply], seconds = timed(lambda: teacher.generate([request()]))
        teacher.close()
    assert reply.parsed is None and "HTTP 503" in (reply.error or "") and reply.attempts == 4 and len(seen) == 4
    waits = gaps(seen)
    assert all(w >= want for w, want in zip(waits, (0.1, 0.2, 0.4), strict=True)), waits  # exponential: doubled each time
    assert seconds < 0.7 + 1.5


def test_a_server_that_keeps_answering_503_is_left_after_the_time_bound() -> None:
    with server([(503, {})]) as (url, seen):
        teacher = OpenAITeacher(url, "m", parallel=1, retries=100, backoff=Backoff(initial=0.2, cap=0.2, jitter=0.0, total=0.9))
        [reply], seconds = timed(lambda: teacher.generate([request()]))
        teacher.close()
    # four waits of 0.2 s fit in 0.9 s, a fifth would not
    assert "HTTP 503" in (reply.error or "") and reply.attempts == len(seen) == 5
    assert 0.8 <= seconds < 0.9 + 1.5


def test_a_retry_after_past_the_time_bound_ends_the_call_at_once() -> None:
    with server([(503, {"Retry-After": "3600"}), (200, {})]) as (url, seen):
        teacher = OpenAITeacher(url, "m", parallel=1, retries=5, backoff=Backoff(total=60.0))
        [reply], seconds = timed(lambda: teacher.generate([request()]))
        teacher.close()
    assert "HTTP 503" in (reply.error or "") and reply.attempts == 1 and len(seen) == 1 and seconds < 5


def test_a_retry_after_given_as_an_http_date_is_waited_out() -> None:
    when = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    with server([(429, {"Retry-After": format_datetime(when, usegmt=True)}), (200, {})]) as (url, seen):
        teacher = OpenAITeacher(url, "m", parallel=1, retries=1, backoff=Backoff(jitter=0.0))
        [reply] = teacher.generate([request()])
        teacher.close()
    assert reply.parsed == REPLY and len(seen) == 2
    assert datetime.now(UTC) >= when and 0.9 <= gaps(seen)[0] < 3.0  # the date has whole seconds: 1 to 2 s from now


def test_retry_after_values() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("7", now) == 7.0 and retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds("Wed, 01 Jan 2025 12:00:30 GMT", now) == 30.0
    assert retry_after_seconds("Wed, 01 Jan 2025 11:00:00 GMT", now) == 0.0  # a date gone by: no wait
    assert retry_after_seconds(None, now) is None and retry_after_seconds("soon", now) is None
    assert retry_after_seconds("-3", now) == 0.0
