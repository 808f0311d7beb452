"""Continuous batching for llama.cpp: several grammar-constrained sequences decoded together in one context.

The prompts' common token prefix (chat template + system message + task description) is evaluated once into
sequence 0 and shared with every slot through `llama_memory_seq_cp` (with a unified KV cache this copies no
data). Each step decodes one token for every generating slot plus prompt tokens of newly admitted jobs in a
single `llama_decode`, then samples each slot on the CPU. Sampling matches llama-cpp-python's chain (top-k 40,
top-p, min-p 0.05, temperature, seeded dist; greedy at temperature 0), but the grammar is checked on the
chosen token first and applied to the whole vocabulary only when that token is rejected (as llama.cpp's own
server does): applying a JSON grammar to 150k candidates every step costs more than the sampling itself.
"""

from __future__ import annotations

import ctypes
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import llama_cpp
import numpy as np

from models.threads import CoreMonitor

TOP_K = 40
MIN_P = 0.05
MIN_SHARED_PREFIX = 8  # below this many tokens, sharing a prefix is not worth a sequence copy

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])


@dataclass
class Job:
    """One generation: prompt tokens, GBNF grammar and sampling settings; `tag` is the caller's."""

    tag: object
    tokens: list[int]
    grammar: str
    max_tokens: int
    temperature: float
    top_p: float
    seed: int


@dataclass
class Outcome:
    """How a job ended: generated tokens (EOG excluded), whether max_tokens cut it, or an error."""

    tokens: list[int]
    cut: bool
    error: str | None
    started: float
    ended: float


# Called when a job ends; may return a new job (a retry) that is scheduled before the remaining queue.
OnFinish = Callable[[Job, Outcome], "Job | None"]


@dataclass
class _Slot:
    seq: int
    job: Job | None = None
    pending: list[int] = field(default_factory=list)
    pos: int = 0
    feed: int | None = None
    out: list[int] = field(default_factory=list)
    grammar: object | None = None
    chain: object | None = None
    logit_index: int = -1
    started: float = 0.0


class BatchedDecoder:
    """Owns a llama.cpp context with `parallel` sequences (+1 for the shared prefix) on an already loaded model."""

    def __init__(
        self,
        model: object,
        *,
        n_ctx: int,
        parallel: int,
        n_threads: int | None = None,
        n_batch: int = 512,
        grammar_first: bool = False,
        monitor: CoreMonitor | None = None,
    ) -> None:
        self.model = model
        self.monitor = monitor  # between decode steps the thread count follows the cores other processes leave free
        self.threads = n_threads
        self.vocab = llama_cpp.llama_model_get_vocab(model)
        self.n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        self.parallel = parallel
        self.n_batch = n_batch
        self.grammar_first = grammar_first
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        params.n_batch = n_batch
        params.n_ubatch = n_batch
        params.n_seq_max = parallel + 1
        params.kv_unified = True  # one cell pool: the shared prefix is stored once for all sequences
        params.no_perf = True
        if n_threads:
            params.n_threads = n_threads
            params.n_threads_batch = n_threads
        self.ctx = llama_cpp.llama_init_from_model(model, params)
        if not self.ctx:
            raise RuntimeError(f"llama.cpp could not create a context (n_ctx={n_ctx}, parallel={parallel})")
        self.n_ctx = llama_cpp.llama_n_ctx(self.ctx)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(n_batch, 0, 1)
        self._full = (llama_cpp.llama_token_data * self.n_vocab)()
        self._full_np = np.frombuffer(self._full, dtype=_TOKEN_DATA)
        self._full_np["id"] = np.arange(self.n_vocab, dtype=np.int32)
        self._full_arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._full, llama_cpp.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False)
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_arr = llama_cpp.llama_token_data_array(
            data=ctypes.cast(self._one, llama_cpp.llama_token_data_p), size=1, selected=-1, sorted=False)
        self._grammar_cache: dict[str, bool] = {}
        self.stats = {"steps": 0, "decode_s": 0.0, "sample_s": 0.0, "grammar_full": 0, "grammar_checks": 0,
                      "prefix_tokens": 0, "evictions": 0}

    # public -------------------------------------------------------------------------------------
    def run(self, jobs: list[Job], on_finish: OnFinish) -> None:
        """Decode all jobs (and the retries `on_finish` returns) until none is left."""
        queue: deque[Job] = deque(jobs)
        llama_cpp.llama_memory_clear(self.mem, True)
        prefix = self._shared_prefix([j.tokens for j in jobs])
        if prefix:
            self._decode_prefix(prefix)
        n_prefix = len(prefix)
        self.stats["prefix_tokens"] = n_prefix
        slots = [_Slot(seq=i + 1) for i in range(self.parallel)]
        limit = self.parallel  # lowered if the KV cache ever runs out despite the budget
        try:
            while queue or any(s.job for s in slots):
                self._admit(queue, slots, limit, n_prefix, on_finish)
                if not any(s.job for s in slots):
                    continue
                n = self._fill_batch(slots)
                t0 = time.perf_counter()
                ret = llama_cpp.llama_decode(self.ctx, self.batch)
                self.stats["decode_s"] += time.perf_counter() - t0
                self.stats["steps"] += 1
                if ret == 1 and n:
                    # No KV cell free despite the budget (fragmentation): restart the active jobs, fewer at once.
                    self.stats["evictions"] += 1
                    running = [s for s in slots if s.job is not None]
                    if len(running) == 1:
                        self._fail(running[0], f"no free KV cell (n_ctx {self.n_ctx})", queue, on_finish)
                        continue
                    for slot in reversed(running):
                        assert slot.job is not None
                        queue.appendleft(slot.job)
                        self._release(slot)
                    limit = max(1, len(running) - 1)
                    continue
                if ret != 0:
                    raise RuntimeError(f"llama_decode returned {ret}")
                self._follow_free_cores()
                t0 = time.perf_counter()
                for slot in slots:
                    if slot.job is not None and slot.logit_index >= 0:
                        self._step(slot, queue, on_finish)
                self.stats["sample_s"] += time.perf_counter() - t0
        finally:
            for slot in slots:
                self._free_samplers(slot)
            llama_cpp.llama_memory_clear(self.mem, True)

    def _follow_free_cores(self) -> None:
        """Fit the decode threads to the free cores when it is time to look again (a spinning thread whose core another
        process holds stalls every step)."""
        if self.monitor is None or not self.monitor.due():
            return
        n = self.monitor.look().threads
        if n != self.threads:
            llama_cpp.llama_set_n_threads(self.ctx, n, n)
            self.threads = n

    def grammar_ok(self, grammar: str) -> bool:
        """Whether llama.cpp accepts a GBNF grammar (it returns no sampler for a bad one)."""
        if grammar not in self._grammar_cache:
            smpl = llama_cpp.llama_sampler_init_grammar(self.vocab, grammar.encode(), b"root")
            self._grammar_cache[grammar] = bool(smpl)
            if smpl:
                llama_cpp.llama_sampler_free(smpl)
        return self._grammar_cache[grammar]

    def close(self) -> None:
        """Free the context and the batch."""
        if self.ctx:
            llama_cpp.llama_batch_free(self.batch)
            llama_cpp.llama_free(self.ctx)
            self.ctx = None

    # scheduling -----------------------------------------------------------------------------------
    def _shared_prefix(self, prompts: list[list[int]]) -> list[int]:
        if not prompts:
            return []
        first = prompts[0]
        n = min(len(p) for p in prompts) - 1  # every job must still decode one token of its own for logits
        for p in prompts[1:]:
            i = 0
            while i < n and p[i] == first[i]:
                i += 1
            n = i
        return first[:n] if n >= MIN_SHARED_PREFIX else []

    def _decode_prefix(self, prefix: list[int]) -> None:
        for start in range(0, len(prefix), self.n_batch):
            chunk = prefix[start:start + self.n_batch]
            for i, tok in enumerate(chunk):
                self._put(i, tok, start + i, 0, False)
            self.batch.n_tokens = len(chunk)
            ret = llama_cpp.llama_decode(self.ctx, self.batch)
            if ret != 0:
                raise RuntimeError(f"llama_decode returned {ret} on the shared prompt prefix ({len(prefix)} tokens)")

    def _budget(self, job: Job, n_prefix: int) -> int:
        return len(job.tokens) - n_prefix + job.max_tokens

    def _admit(self, queue: deque[Job], slots: list[_Slot], limit: int, n_prefix: int, on_finish: OnFinish) -> None:
        active = [s for s in slots if s.job is not None]
        used = n_prefix + sum(self._budget(s.job, n_prefix) for s in active if s.job)
        for slot in slots:
            if not queue or len(active) >= limit:
                return
            if slot.job is not None:
                continue
            job = queue[0]
            need = self._budget(job, n_prefix)
            if n_prefix + need > self.n_ctx:
                queue.popleft()
                now = time.perf_counter()
                msg = f"prompt ({len(job.tokens)} tokens) + max_tokens ({job.max_tokens}) exceed n_ctx ({self.n_ctx})"
                retry = on_finish(job, Outcome([], False, msg, now, now))
                if retry is not None:
                    queue.appendleft(retry)
                continue
            if used + need > self.n_ctx:
                return  # wait for a running sequence to finish
            queue.popleft()
            used += need
            active.append(slot)
            self._start(slot, job, n_prefix)

    def _start(self, slot: _Slot, job: Job, n_prefix: int) -> None:
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        if n_prefix:
            llama_cpp.llama_memory_seq_cp(self.mem, 0, slot.seq, -1, -1)
        slot.job = job
        slot.pending = list(job.tokens[n_prefix:])
        slot.pos = n_prefix
        slot.feed = None
        slot.out = []
        slot.started = time.perf_counter()
        slot.grammar = llama_cpp.llama_sampler_init_grammar(self.vocab, job.grammar.encode(), b"root")
        if not slot.grammar:
            raise ValueError("llama.cpp refused the grammar built from the JSON schema")
        slot.chain = None
        if job.temperature > 0:
            chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_k(TOP_K))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_top_p(job.top_p, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_temp(job.temperature))
            llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_dist(job.seed))
            slot.chain = chain

    def _fill_batch(self, slots: list[_Slot]) -> int:
        n = 0
        for slot in slots:
            slot.logit_index = -1
            if slot.job is not None and slot.feed is not None:
                self._put(n, slot.feed, slot.pos, slot.seq, True)
                slot.logit_index = n
                slot.pos += 1
                slot.feed = None
                n += 1
        for slot in slots:
            if slot.job is None or not slot.pending or n >= self.n_batch:
                continue
            take = slot.pending[: self.n_batch - n]
            for i, tok in enumerate(take):
                last = len(take) == len(slot.pending) and i == len(take) - 1
                self._put(n, tok, slot.pos, slot.seq, last)
                if last:
                    slot.logit_index = n
                slot.pos += 1
                n += 1
            slot.pending = slot.pending[len(take):]
        self.batch.n_tokens = n
        return n

    def _put(self, i: int, token: int, pos: int, seq: int, logits: bool) -> None:
        b = self.batch
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = 1
        b.seq_id[i][0] = seq
        b.logits[i] = 1 if logits else 0

    def _step(self, slot: _Slot, queue: deque[Job], on_finish: OnFinish) -> None:
        job = slot.job
        assert job is not None
        token = self._sample(slot)
        error = None
        if token < 0:
            error = "the grammar allows no token here"
        elif llama_cpp.llama_vocab_is_eog(self.vocab, token):
            pass
        else:
            llama_cpp.llama_sampler_accept(slot.grammar, token)
            slot.out.append(token)
            if len(slot.out) < job.max_tokens:
                slot.feed = token
                return
        if error is not None:
            self._fail(slot, error, queue, on_finish)
            return
        outcome = Outcome(slot.out, len(slot.out) >= job.max_tokens, None, slot.started, time.perf_counter())
        self._release(slot)
        retry = on_finish(job, outcome)
        if retry is not None:
            queue.appendleft(retry)

    def _fail(self, slot: _Slot, error: str, queue: deque[Job], on_finish: OnFinish) -> None:
        job = slot.job
        assert job is not None
        outcome = Outcome(slot.out, False, error, slot.started, time.perf_counter())
        self._release(slot)
        retry = on_finish(job, outcome)
        if retry is not None:
            queue.appendleft(retry)

    def _release(self, slot: _Slot) -> None:
        llama_cpp.llama_memory_seq_rm(self.mem, slot.seq, -1, -1)
        self._free_samplers(slot)
        slot.job = None
        slot.pending = []
        slot.feed = None
        slot.logit_index = -1

    def _free_samplers(self, slot: _Slot) -> None:
        for name in ("grammar", "chain"):
            smpl = getattr(slot, name)
            if smpl:
                llama_cpp.llama_sampler_free(smpl)
            setattr(slot, name, None)

    # sampling -------------------------------------------------------------------------------------
    def _sample(self, slot: _Slot) -> int:
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, slot.logit_index), shape=(self.n_vocab,))
        if not self.grammar_first:
            token = int(np.argmax(logits)) if slot.chain is None else self._sample_full(logits, slot, with_grammar=False)
            self.stats["grammar_checks"] += 1
            if self._grammar_accepts(slot.grammar, token):
                return token
        self.stats["grammar_full"] += 1
        return self._sample_full(logits, slot, with_grammar=True)

    def _sample_full(self, logits: np.ndarray, slot: _Slot, *, with_grammar: bool) -> int:
        arr = self._full_arr
        self._full_np["id"] = np.arange(self.n_vocab, dtype=np.int32)  # samplers reorder the array in place
        self._full_np["logit"] = logits
        self._full_np["p"] = 0.0
        arr.size = self.n_vocab
        arr.selected = -1
        arr.sorted = False
        if with_grammar:
            llama_cpp.llama_sampler_apply(slot.grammar, ctypes.byref(arr))
        if slot.chain is None:
            view = self._full_np["logit"][: arr.size]
            best = int(np.argmax(view))
            if view[best] == -math.inf:
                return -1
            return int(self._full_np["id"][best])
        if with_grammar and not np.isfinite(self._full_np["logit"][: arr.size]).any():
            return -1
        llama_cpp.llama_sampler_apply(slot.chain, ctypes.byref(arr))
        return int(self._full_np["id"][arr.selected])

    def _grammar_accepts(self, grammar: object, token: int) -> bool:
        one = self._one[0]
        one.id = token  # type: ignore[assignment]  # ctypes converts the int on assignment
        one.logit = 0.0
        one.p = 0.0
        self._one_arr.size = 1
        self._one_arr.selected = -1
        self._one_arr.sorted = False
        llama_cpp.llama_sampler_apply(grammar, ctypes.byref(self._one_arr))
        return self._one[0].logit != -math.inf
