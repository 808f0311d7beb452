"""An exported GGUF answering as Ollama would run it: template-rendered prompts, greedy decoding, the stop strings.

It offers the student's two evaluation calls (score_options, generate) so an export is checked the way the run
predicted: options by summed log-probability after the prompt, everything else by greedy generation.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


class GgufStudent:
    """A GGUF in llama-cpp-python; prompts are tokenized with the file's own BOS rule, as Ollama does."""

    def __init__(self, path: Path, *, n_ctx: int = 2048, n_threads: int | None = None,
                 parameters: dict[str, str] | None = None) -> None:
        import llama_cpp

        threads = n_threads or os.cpu_count() or 1
        self.llm = llama_cpp.Llama(str(path), n_ctx=n_ctx, n_batch=min(512, n_ctx), logits_all=True, n_threads=threads,
                                   n_threads_batch=threads, seed=0, verbose=False)
        self.parameters = parameters or {}

    def _tokens(self, text: str, first: bool) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=first, special=True)

    def score_options(self, prompts: list[str], options: list[list[str]], batch_size: int = 1,
                      on_progress: Callable[[int, int], None] | None = None) -> list[list[float]]:
        """Sum of the log-probs of each option's tokens after its prompt (the prompt runs once per prompt)."""
        out: list[list[float]] = []
        for k, (prompt, opts) in enumerate(zip(prompts, options, strict=True)):
            ids = self._tokens(prompt, True)
            self.llm.reset()
            self.llm.eval(ids)
            scores = []
            for option in opts:
                tail = self._tokens(option, False)
                self.llm.n_tokens = len(ids)
                if len(tail) > 1:
                    self.llm.eval(tail[:-1])
                logits = np.asarray(self.llm.scores[len(ids) - 1:len(ids) - 1 + len(tail)], dtype=np.float64)
                top = logits.max(axis=-1, keepdims=True)
                logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=-1, keepdims=True))
                scores.append(float(sum(logprobs[i, t] for i, t in enumerate(tail))))
            out.append(scores)
            if on_progress is not None:
                on_progress(k + 1, len(prompts))
        return out

    def generate(self, prompts: list[str], max_new_tokens: int, stop: Sequence[str], batch_size: int = 1,
                 on_progress: Callable[[int, int], None] | None = None) -> list[str]:
        """Greedy completions cut at the first stop string (EOS ends one too), with the Modelfile's sampling options."""
        opts: dict[str, Any] = {"temperature": float(self.parameters.get("temperature", 0)),
                                "repeat_penalty": float(self.parameters.get("repeat_penalty", 1.0))}
        texts = []
        for k, prompt in enumerate(prompts):
            out = self.llm.create_completion(prompt, max_tokens=max_new_tokens, stop=list(stop) or None, seed=0, **opts)
            texts.append(out["choices"][0]["text"])  # type: ignore[index]
            if on_progress is not None:
                on_progress(k + 1, len(prompts))
        return texts

    def close(self) -> None:
        """Free the model."""
        self.llm.close()


def gguf_scores(path: str, n_ctx: int, n_threads: int | None, parameters: dict[str, str], prompts: list[str],
                options: list[list[str]]) -> list[list[float]]:
    """A whole check's option scores, model loaded and freed here (the unit of work sent to a fresh process)."""
    model = GgufStudent(Path(path), n_ctx=n_ctx, n_threads=n_threads, parameters=parameters)
    try:
        return model.score_options(prompts, options)
    finally:
        model.close()


def gguf_texts(path: str, n_ctx: int, n_threads: int | None, parameters: dict[str, str], prompts: list[str],
               max_new_tokens: int, stop: list[str]) -> list[str]:
    """A whole check's greedy texts, model loaded and freed here (the unit of work sent to a fresh process)."""
    model = GgufStudent(Path(path), n_ctx=n_ctx, n_threads=n_threads, parameters=parameters)
    try:
        return model.generate(prompts, max_new_tokens, stop)
    finally:
        model.close()
