"""The one retry policy of every teacher backend: how many attempts, each attempt's seed, and the reply they make."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from models.teacher.base import TeacherReply, TeacherRequest, attempt_seed, check_reply


@dataclass
class Attempt:
    """What one try at a request gave: its text, or the backend's failure and whether another try could help."""

    text: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cut: bool = False  # generation stopped at max_tokens
    failure: str | None = None  # the backend gave no reply (server down, prompt longer than the context)
    retryable: bool = False  # a failure another try may not repeat (a dropped connection, an overloaded server)


class Attempts:
    """The attempts at one request so far: whether to try again, with which seed, and the reply they add up to.

    A reply is retried (with a new seed) while it is not schema-valid JSON; a greedy request is tried once (it would
    repeat itself) and a failure only when it is retryable. Tokens are summed over attempts; seconds run from the first
    attempt's start to the last one's end.
    """

    def __init__(self, request: TeacherRequest, retries: int, started: float | None = None) -> None:
        self.request = request
        self.limit = 1 if request.temperature == 0 else retries + 1
        self.count = 0
        self.tokens_in = self.tokens_out = 0
        self.text = ""
        self.parsed: dict[str, Any] | None = None
        self.error: str | None = None
        self.started = started
        self.ended = started

    def seed(self) -> int:
        """Sampler seed of the next attempt."""
        return attempt_seed(self.request.seed, self.count)

    def add(self, attempt: Attempt, started: float | None = None, ended: float | None = None) -> bool:
        """Record an attempt; True when another one should be made."""
        now = time.perf_counter()
        if self.started is None:
            self.started = started if started is not None else now
        self.ended = ended if ended is not None else now
        self.count += 1
        self.tokens_out += attempt.tokens_out
        self.tokens_in = attempt.tokens_in or self.tokens_in
        if attempt.failure is not None:
            self.parsed, self.error = None, attempt.failure
            return attempt.retryable and self.count < self.limit
        self.text = attempt.text
        self.parsed, self.error = check_reply(attempt.text, self.request.schema)
        if self.error and attempt.cut:
            self.error = f"cut at max_tokens={self.request.max_tokens}: {self.error}"
        return self.error is not None and self.count < self.limit

    def fail(self, error: str) -> TeacherReply:
        """The reply when the call ends without another attempt (a failed batch, a prompt that cannot be built)."""
        self.parsed, self.error = None, error
        return self.reply()

    def reply(self) -> TeacherReply:
        """The reply the attempts add up to."""
        seconds = (self.ended or 0.0) - (self.started or 0.0)
        return TeacherReply(key=self.request.key, text=self.text, parsed=self.parsed, tokens_in=self.tokens_in,
                            tokens_out=self.tokens_out, seconds=seconds, error=self.error, attempts=self.count)


def with_retries(request: TeacherRequest, retries: int, attempt: Callable[[int], Attempt]) -> TeacherReply:
    """Call `attempt(seed)` until it gives a schema-valid reply or the policy says stop."""
    log = Attempts(request, retries, started=time.perf_counter())
    while log.add(attempt(log.seed())):
        pass
    return log.reply()
