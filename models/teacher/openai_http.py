"""A teacher behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp's llama-server, llama-cpp-python's
server), through one kept httpx client."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

from models.params import ResponseFormat
from models.teacher.base import OnReply, TeacherReply, TeacherRequest
from models.teacher.grammar import GRAMMAR, schema_grammar
from models.teacher.retry import Attempt, Backoff, with_retries


class ServerError(Exception):
    """An endpoint that did not answer with a completion; `retryable` when another try may go better."""

    def __init__(self, message: str, *, retryable: bool, about_format: bool = False, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.about_format = about_format  # the server refused the response_format it was sent
        self.retry_after = retry_after  # seconds the server asked us to wait (Retry-After), when it said


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header as seconds from now: delay-seconds or an HTTP date (RFC 9110); None when absent or unreadable."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is GMT; a zone-less one is read as such
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _client(base_url: str, timeout: float, connections: int, api_key: str | None) -> Any:
    """A kept HTTP client (pooled connections, JSON headers, the key when there is one)."""
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=base_url.rstrip("/") + "/", headers=headers, timeout=httpx.Timeout(timeout, connect=10.0),
                        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections))


def _call(client: Any, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    """One request; transport failures, HTTP errors and non-JSON bodies become ServerError."""
    import httpx

    try:
        resp = client.request(method, path, json=body)
    except httpx.HTTPError as err:
        raise ServerError(f"{type(err).__name__}: {err}", retryable=True) from None
    if resp.status_code >= 400:
        detail = resp.text[:300]
        raise ServerError(f"HTTP {resp.status_code}: {detail}", retryable=resp.status_code >= 500 or resp.status_code in (408, 429),
                          about_format="response_format" in detail or "json_schema" in detail,
                          retry_after=retry_after_seconds(resp.headers.get("retry-after")))
    try:
        data = resp.json()
    except ValueError:
        raise ServerError(f"HTTP {resp.status_code}: not JSON: {resp.text[:120]!r}", retryable=True) from None
    if not isinstance(data, dict):
        raise ServerError(f"HTTP {resp.status_code}: expected a JSON object", retryable=True)
    return data


def api_key_from_env() -> str | None:
    """The teacher's key: a dedicated variable, so a user's OpenAI key never travels to whatever base_url names."""
    return os.environ.get("L2L_TEACHER_API_KEY")


def server_models(base_url: str, *, timeout: float = 10.0, api_key: str | None = None) -> list[str]:
    """The model ids the endpoint serves (GET /models); ServerError when it does not answer."""
    with _client(base_url, timeout, 1, api_key if api_key is not None else api_key_from_env()) as client:
        return _model_ids(_call(client, "GET", "models"))


def _model_ids(data: dict[str, Any]) -> list[str]:
    return [str(m.get("id")) for m in data.get("data") or [] if isinstance(m, dict) and m.get("id")]


class OpenAITeacher:
    """Sends up to `parallel` requests at once; replies must match the JSON schema sent as `response_format`.

    response_format 'json_schema' is OpenAI's form (vLLM, llama-server); 'json_object' with a `schema` is the form
    llama-cpp-python's server understands; 'auto' starts with json_schema and switches once when the server refuses it;
    'grammar' sends the in-process teacher's GBNF (llama-server, llama-cpp-python's server), whose strings let LaTeX
    follow a backslash where a server's own JSON grammar forces \\n (\\ntriangle for \\triangle).
    A busy or failing server (429, 5xx, a dropped connection) is retried after a backoff that honours Retry-After.
    """

    def __init__(self, base_url: str, model: str, *, parallel: int = 8, retries: int = 2, timeout: float = 600.0,
                 api_key: str | None = None, response_format: ResponseFormat = "auto", backoff: Backoff | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.parallel = parallel
        self.retries = retries
        self.timeout = timeout
        self.backoff = backoff or Backoff()
        self.api_key = api_key if api_key is not None else api_key_from_env()
        self.auto = response_format == "auto"
        self.response_format: str = "json_schema" if self.auto else response_format
        self.client = _client(self.base_url, timeout, max(1, parallel), self.api_key)
        self._lock = threading.Lock()
        self._served: list[str] | None = None
        self._served_error: str | None = None

    def identity(self) -> str:
        """The endpoint and model name (the server's weights cannot be hashed from here), and the grammar when sent."""
        grammar = f":{GRAMMAR}" if self.response_format == "grammar" else ""
        return f"openai:{self.base_url}:{self.model}{grammar}"

    def served(self) -> list[str]:
        """The model ids the server reports (asked once; empty when it would not say)."""
        if self._served is None:
            try:
                self._served = _model_ids(_call(self.client, "GET", "models"))
            except ServerError as err:
                self._served, self._served_error = [], str(err)
        return self._served

    def info(self) -> dict[str, Any]:
        """The endpoint, the model asked for and the model the server says it serves; GPU placement is the server's."""
        served = self.served()
        server_model = self.model if self.model in served else (served[0] if served else None)
        return {"backend": "openai", "base_url": self.base_url, "model": self.model, "server_model": server_model,
                "server_models": served, "server_error": self._served_error, "parallel": self.parallel,
                "response_format": self.response_format, "n_ctx": None, "n_gpu_layers_offloaded": None,
                "chat_template": "server"}

    def generate(self, requests: list[TeacherRequest], on_reply: OnReply | None = None) -> list[TeacherReply]:
        """Replies in request order; `on_reply` runs on the calling thread (safe for SQLite writes)."""
        replies: list[TeacherReply | None] = [None] * len(requests)
        with ThreadPoolExecutor(max_workers=max(1, self.parallel), thread_name_prefix="teacher") as pool:
            futures = {pool.submit(self._complete, req): i for i, req in enumerate(requests)}
            for fut in as_completed(futures):
                reply = fut.result()
                replies[futures[fut]] = reply
                if on_reply:
                    on_reply(reply)
        return [r for r in replies if r is not None]

    def close(self) -> None:
        """Close the kept connections."""
        self.client.close()

    def _complete(self, req: TeacherRequest) -> TeacherReply:
        return with_retries(req, self.retries, lambda seed: self._attempt(req, seed), self.backoff)

    def _attempt(self, req: TeacherRequest, seed: int) -> Attempt:
        """One chat completion: the reply text and usage, or the failure."""
        try:
            out = self._chat(req, seed)
            choice = out["choices"][0]
            text = choice["message"].get("content") or ""
            usage = out.get("usage") or {}
            return Attempt(text=text, tokens_in=int(usage.get("prompt_tokens") or 0),
                           tokens_out=int(usage.get("completion_tokens") or 0), cut=choice.get("finish_reason") == "length")
        except ServerError as err:
            return Attempt(failure=f"{self.base_url}: {err}", retryable=err.retryable, retry_after=err.retry_after)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
            return Attempt(failure=f"{self.base_url}: malformed completion ({type(err).__name__}: {err})", retryable=True)

    def _chat(self, req: TeacherRequest, seed: int) -> dict[str, Any]:
        """POST the request in the current response_format; in auto mode, fall back to json_object once if refused."""
        form = self.response_format
        try:
            return _call(self.client, "POST", "chat/completions", self._body(req, seed, form))
        except ServerError as err:
            if not (self.auto and form == "json_schema" and err.about_format):
                raise
        with self._lock:
            self.response_format = "json_object"
        return _call(self.client, "POST", "chat/completions", self._body(req, seed, "json_object"))

    def _body(self, req: TeacherRequest, seed: int, form: str) -> dict[str, Any]:
        body = {"model": self.model, "messages": req.messages, "max_tokens": req.max_tokens,
                "temperature": req.temperature, "top_p": req.top_p, "seed": seed}
        if form == "grammar":
            return {**body, "grammar": schema_grammar(req.schema)}
        if form == "json_schema":
            response_format: dict[str, Any] = {"type": "json_schema", "json_schema": {
                "name": "teacher_reply", "schema": req.schema, "strict": True}}
        else:
            response_format = {"type": "json_object", "schema": req.schema}
        return {**body, "response_format": response_format}
