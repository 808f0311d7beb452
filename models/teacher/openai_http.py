"""A teacher behind an OpenAI-compatible chat-completions endpoint (llama.cpp server, vLLM), standard library only."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Any

from models.teacher.base import OnReply, TeacherReply, TeacherRequest, attempt_seed, check_reply


class OpenAITeacher:
    """Sends up to `parallel` requests at once; replies must match the JSON schema sent as `response_format`."""

    def __init__(self, base_url: str, model: str, *, parallel: int = 8, retries: int = 2, timeout: float = 600.0,
                 api_key: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.parallel = parallel
        self.retries = retries
        self.timeout = timeout
        # A dedicated variable: a user's OpenAI key must not travel to whatever server base_url names.
        self.api_key = api_key if api_key is not None else os.environ.get("L2L_TEACHER_API_KEY")

    def identity(self) -> str:
        """The endpoint and model name (the server's weights cannot be hashed from here)."""
        return f"openai:{self.base_url}:{self.model}"

    def info(self) -> dict[str, Any]:
        """The endpoint as configured; GPU placement is the server's business."""
        return {"backend": "openai", "base_url": self.base_url, "model": self.model, "parallel": self.parallel,
                "n_ctx": None, "n_gpu_layers_offloaded": None, "chat_template": "server"}

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
        """Nothing held open between calls."""

    def _complete(self, req: TeacherRequest) -> TeacherReply:
        start = time.perf_counter()
        tokens_in = tokens_out = 0
        text, parsed, error = "", None, None
        attempts = 1 if req.temperature == 0 else self.retries + 1
        attempt = 0
        for attempt in range(1, attempts + 1):
            body = {
                "model": self.model,
                "messages": req.messages,
                "max_tokens": req.max_tokens,
                "temperature": req.temperature,
                "top_p": req.top_p,
                "seed": attempt_seed(req.seed, attempt - 1),
                "response_format": {"type": "json_schema",
                                    "json_schema": {"name": "teacher_reply", "schema": req.schema, "strict": True}},
            }
            try:
                out = self._post("/chat/completions", body)
                choice = out["choices"][0]
                text = choice["message"].get("content") or ""
                usage = out.get("usage") or {}
                tokens_in = int(usage.get("prompt_tokens") or 0)
                tokens_out += int(usage.get("completion_tokens") or 0)
            except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
                error = f"{self.base_url}: {err}"
                continue
            parsed, error = check_reply(text, req.schema)
            if error and choice.get("finish_reason") == "length":
                error = f"cut at max_tokens={req.max_tokens}: {error}"
            if error is None:
                break
        return TeacherReply(key=req.key, text=text, parsed=parsed, tokens_in=tokens_in, tokens_out=tokens_out,
                            seconds=time.perf_counter() - start, error=error, attempts=attempt)

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", errors="replace")[:300]
            raise OSError(f"HTTP {err.code}: {detail}") from None
