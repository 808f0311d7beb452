"""The in-process llama.cpp teacher: a GGUF's own chat template, JSON-schema grammar, batched decoding."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from models.teacher.base import OnReply, TeacherReply, TeacherRequest, file_sha256
from models.teacher.grammar import GRAMMAR, schema_grammar
from models.teacher.retry import Attempt, Attempts, with_retries

Mode = Literal["auto", "batched", "sequential"]

CHATML_FALLBACK = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SEQUENTIAL_SAMPLING = {"top_k": 40, "min_p": 0.05, "repeat_penalty": 1.0}  # same chain as the batched decoder


class LlamaCppTeacher:
    """A GGUF teacher run by llama-cpp-python: several sequences per context (`parallel` > 1) or one at a time."""

    def __init__(
        self,
        model_path: Path,
        *,
        n_ctx: int = 4096,
        parallel: int = 8,
        n_gpu_layers: int = -1,
        n_threads: int | None = None,
        retries: int = 2,
        seed: int = 0,
        mode: Mode = "auto",
        grammar_first: bool = False,
    ) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self.model_path = Path(model_path)
        self.retries = retries
        self.parallel = parallel
        from models.threads import CoreMonitor, describe

        self.monitor = CoreMonitor(n_threads)  # a config value wins; else the free cores, looked at again as it decodes
        start = self.monitor.first()
        self.n_threads = start.threads
        self.threads_chosen = describe(start, n_threads, self.monitor.n_cores)
        self.n_gpu_layers = n_gpu_layers
        self.seed = seed
        self.fallback: str | None = None
        self.mode: Literal["batched", "sequential"] = (
            "sequential" if mode == "sequential" or (mode == "auto" and parallel == 1) else "batched")
        self.decoder = None
        if self.mode == "batched":
            # The decoder owns the decoding context; the Llama object's own context only has to exist
            # (tokenizing and templates use the model), so it is kept tiny.
            self.llm = self._load(256)
            try:
                if self._recurrent():
                    raise RuntimeError("recurrent/hybrid models keep one state per sequence; no prefix sharing")
                from models.teacher.batched import BatchedDecoder

                self.decoder = BatchedDecoder(self.llm._model.model, n_ctx=n_ctx, parallel=parallel,
                                              n_threads=self.n_threads, grammar_first=grammar_first,
                                              monitor=self.monitor)
            except RuntimeError as err:
                self.fallback = f"sequential decoding: {err}"
                self.mode = "sequential"
                self.llm.close()
        if self.mode == "sequential":
            self.llm = self._load(n_ctx)
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.template_source = "gguf:tokenizer.chat_template" if template else "fallback:chatml"
        eos, bos = self.llm.token_eos(), self.llm.token_bos()
        self.formatter = Jinja2ChatFormatter(
            template=template or CHATML_FALLBACK,
            eos_token=self.llm._model.token_get_text(eos) if eos != -1 else "",
            bos_token=self.llm._model.token_get_text(bos) if bos != -1 else "",
            stop_token_ids=[eos],
        )
        self.llm.chat_handler = self.formatter.to_chat_handler()  # create_chat_completion renders the same way
        self.n_ctx = self.decoder.n_ctx if self.decoder else self.llm.n_ctx()
        self._identity: str | None = None

    def _load(self, n_ctx: int) -> Any:
        import llama_cpp

        return llama_cpp.Llama(
            str(self.model_path), n_ctx=n_ctx, n_batch=min(512, n_ctx), n_ubatch=min(512, n_ctx),
            n_gpu_layers=self.n_gpu_layers, n_threads=self.n_threads, n_threads_batch=self.n_threads,
            seed=self.seed, verbose=False,
        )

    def _recurrent(self) -> bool:
        import llama_cpp

        model = self.llm._model.model
        return bool(llama_cpp.llama_model_is_recurrent(model) or llama_cpp.llama_model_is_hybrid(model))

    # Teacher protocol -----------------------------------------------------------------------------
    def identity(self) -> str:
        """Model file sha256 + backend + n_ctx + decoding path (batched sampling differs from sequential at T>0) + grammar."""
        if self._identity is None:
            digest = file_sha256(self.model_path)
            self._identity = f"llama_cpp:{digest}:n_ctx={self.n_ctx}:{self.mode}:{GRAMMAR}"
        return self._identity

    def info(self) -> dict[str, Any]:
        """What llama.cpp actually set up."""
        import llama_cpp

        n_layer = llama_cpp.llama_model_n_layer(self.llm._model.model)
        offload = bool(llama_cpp.llama_supports_gpu_offload())
        asked = self.n_gpu_layers if self.n_gpu_layers >= 0 else n_layer + 1
        return {
            "backend": "llama_cpp",
            "model": str(self.model_path),
            "mode": self.mode,
            "n_ctx": self.n_ctx,
            "parallel": self.parallel if self.mode == "batched" else 1,
            "n_threads": self.n_threads,
            "threads_chosen": self.threads_chosen,
            "gpu_offload_supported": offload,
            "n_gpu_layers_requested": self.n_gpu_layers,
            # llama.cpp offloads min(asked, layers + output layer) when the build has a GPU backend, else none.
            "n_gpu_layers_offloaded": min(asked, n_layer + 1) if offload else 0,
            "n_layer": n_layer,
            "chat_template": self.template_source,
            "fallback": self.fallback,
            "n_vocab": self.llm.n_vocab(),
        }

    def generate(self, requests: list[TeacherRequest], on_reply: OnReply | None = None) -> list[TeacherReply]:
        """Replies in request order; invalid replies are retried with new seeds up to `retries` times."""
        if not requests:
            return []
        if self.decoder is not None:
            return self._generate_batched(requests, on_reply)
        return self._generate_sequential(requests, on_reply)

    def close(self) -> None:
        """Free the decoding context and the model."""
        if self.decoder is not None:
            self.decoder.close()
            self.decoder = None
        self.llm.close()

    # helpers --------------------------------------------------------------------------------------
    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        """The chat prompt as the model sees it (the GGUF's template, special tokens parsed)."""
        result = self.formatter(messages=messages)  # type: ignore[arg-type]  # role/content dicts
        return self.llm.tokenize(result.prompt.encode("utf-8"), add_bos=not result.added_special, special=True)

    def _generate_batched(self, requests: list[TeacherRequest], on_reply: OnReply | None) -> list[TeacherReply]:
        from models.teacher.batched import Job, Outcome

        assert self.decoder is not None
        replies: list[TeacherReply | None] = [None] * len(requests)
        logs = [Attempts(req, self.retries) for req in requests]
        jobs: list[Job] = []

        def done(i: int, reply: TeacherReply) -> None:
            replies[i] = reply
            if on_reply:
                on_reply(reply)

        for i, req in enumerate(requests):
            try:
                tokens = self.prompt_tokens(req.messages)
                grammar = schema_grammar(req.schema)
                if not self.decoder.grammar_ok(grammar):
                    raise ValueError("llama.cpp refused the grammar built from the JSON schema")
            except Exception as err:  # a bad template or schema fails this request, not the batch
                done(i, logs[i].fail(f"prompt: {err}"))
                continue
            jobs.append(Job(i, tokens, grammar, req.max_tokens, req.temperature, req.top_p, logs[i].seed()))

        def on_finish(job: Job, outcome: Outcome) -> Job | None:
            i = int(job.tag)  # type: ignore[call-overload]
            text = self.llm.detokenize(outcome.tokens).decode("utf-8", errors="replace")
            # A decoder error (prompt too long) would recur: only a bad reply is worth another seed.
            attempt = Attempt(text=text, tokens_in=len(job.tokens), tokens_out=len(outcome.tokens), cut=outcome.cut,
                              failure=outcome.error)
            if logs[i].add(attempt, started=outcome.started, ended=outcome.ended):
                return Job(i, job.tokens, job.grammar, job.max_tokens, job.temperature, job.top_p, logs[i].seed())
            done(i, logs[i].reply())
            return None

        try:
            self.decoder.run(jobs, on_finish)
        except Exception as err:  # a failed decode ends the call, but every request still gets its reply
            for i in range(len(requests)):
                if replies[i] is None:
                    done(i, logs[i].fail(f"llama.cpp: {err}"))
        return [r for r in replies if r is not None]

    def _generate_sequential(self, requests: list[TeacherRequest], on_reply: OnReply | None) -> list[TeacherReply]:
        replies = []
        for req in requests:
            reply = self.complete_one(req)
            replies.append(reply)
            if on_reply:
                on_reply(reply)
        return replies

    def complete_one(self, req: TeacherRequest) -> TeacherReply:
        """One request through create_chat_completion (the simple path and the benchmark baseline)."""
        return with_retries(req, self.retries, lambda seed: self._chat_attempt(req, seed))

    def _chat_attempt(self, req: TeacherRequest, seed: int) -> Attempt:
        """One create_chat_completion call with the schema's grammar."""
        from llama_cpp.llama_grammar import LlamaGrammar

        try:
            # The schema's grammar is passed directly (not as response_format) so both paths use the same GBNF.
            out = self.llm.create_chat_completion(
                messages=req.messages,
                grammar=LlamaGrammar.from_string(schema_grammar(req.schema), verbose=False),
                max_tokens=req.max_tokens, temperature=req.temperature, top_p=req.top_p, seed=seed,
                **SEQUENTIAL_SAMPLING,
            )
        except Exception as err:  # e.g. prompt longer than the context: another seed would not help
            self.llm.reset()
            return Attempt(failure=f"llama.cpp: {err}")
        usage = out["usage"]
        choice = out["choices"][0]
        return Attempt(text=choice["message"]["content"] or "", tokens_in=usage["prompt_tokens"],
                       tokens_out=usage["completion_tokens"], cut=choice["finish_reason"] == "length")
