"""The one retry policy of every teacher backend: how many attempts, each attempt's seed, the waits between them and
the reply they make."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_result

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
    retry_after: float | None = None  # seconds the server asked to be left alone (HTTP Retry-After)


@dataclass(frozen=True)
class Backoff:
    """The waits before retrying a failed try: exponential with jitter, or the server's Retry-After; bounded in all."""

    initial: float = 1.0  # seconds before the first retry of a failure; doubled for each later one
    cap: float = 30.0  # the longest exponential wait (a server's Retry-After may ask for more, within `total`)
    jitter: float = 1.0  # up to this many seconds added at random, so parallel requests do not come back in step
    total: float = 120.0  # no retry whose wait would take the waiting of this call past this many seconds

    def wait(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait after the `failures`-th failure in a row (Retry-After, when given, replaces the doubling)."""
        base = retry_after if retry_after is not None else min(self.cap, self.initial * 2 ** (failures - 1))
        return max(0.0, base) + random.uniform(0.0, self.jitter)


NO_WAIT = Backoff(initial=0.0, cap=0.0, jitter=0.0)  # in-process backends: a failure there is not a busy server


class Attempts:
    """The attempts at one request so far: whether to try again, with which seed, and the reply they add up to.

    A reply is retried (with a new seed) while it is not schema-valid JSON, except a greedy request's (it would repeat
    itself); a failure is retried when it is retryable, greedy or not (the server sampled nothing). At most
    `retries + 1` attempts in all. Tokens are summed over attempts; seconds run from the first attempt's start to the
    last one's end.
    """

    def __init__(self, request: TeacherRequest, retries: int, started: float | None = None) -> None:
        self.request = request
        self.limit = retries + 1
        self.greedy = request.temperature == 0
        self.count = 0
        self.failures = 0  # failed attempts in a row (the backoff doubles with them)
        self.last: Attempt | None = None
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
        self.last = attempt
        self.tokens_out += attempt.tokens_out
        self.tokens_in = attempt.tokens_in or self.tokens_in
        if attempt.failure is not None:
            self.failures += 1
            self.parsed, self.error = None, attempt.failure
            return attempt.retryable and self.count < self.limit
        self.failures = 0
        self.text = attempt.text
        self.parsed, self.error = check_reply(attempt.text, self.request.schema)
        if self.error and attempt.cut:
            self.error = f"cut at max_tokens={self.request.max_tokens}: {self.error}"
        return self.error is not None and not self.greedy and self.count < self.limit

    def wait(self, backoff: Backoff) -> float:
        """Seconds before the next attempt: none after a bad reply (a new seed is enough), a backoff after a failure."""
        if self.last is None or self.last.failure is None:
            return 0.0
        return backoff.wait(self.failures, self.last.retry_after)

    def fail(self, error: str) -> TeacherReply:
        """The reply when the call ends without another attempt (a failed batch, a prompt that cannot be built)."""
        self.parsed, self.error = None, error
        return self.reply()

    def reply(self) -> TeacherReply:
        """The reply the attempts add up to."""
        seconds = (self.ended or 0.0) - (self.started or 0.0)
        return TeacherReply(key=self.request.key, text=self.text, parsed=self.parsed, tokens_in=self.tokens_in,
                            tokens_out=self.tokens_out, seconds=seconds, error=self.error, attempts=self.count)


def with_retries(request: TeacherRequest, retries: int, attempt: Callable[[int], Attempt],
                 backoff: Backoff = NO_WAIT) -> TeacherReply:
    """Call `attempt(seed)` until it gives a schema-valid reply or the policy says stop, waiting as `backoff` says
    after a failure; a wait that would take this call's waiting past `backoff.total` ends it instead."""
    log = Attempts(request, retries, started=time.perf_counter())

    def stop(state: RetryCallState) -> bool:
        # tenacity (>= 8.3) has computed the upcoming wait before it asks whether to stop
        return state.attempt_number >= log.limit or state.idle_for + state.upcoming_sleep > backoff.total

    retrying = Retrying(retry=retry_if_result(bool), wait=lambda _state: log.wait(backoff), stop=stop,
                        retry_error_callback=lambda _state: False)
    retrying(lambda: log.add(attempt(log.seed())))
    return log.reply()
