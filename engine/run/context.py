"""What every phase of one run works with: its store rows, resolved config and task, model slots, and the writers of
its log, progress and phase records."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.config.schema import RunConfig
from engine.run.faults import fault_point
from engine.run.meter import PhaseMeter
from engine.run.model_slots import ModelSlots
from engine.run.progress_writer import Progress, ProgressWriter
from engine.store.db import Store, now
from engine.store.rows import StoredExample
from engine.tasks.base import Task
from models.teacher.base import TeacherRequest


@dataclass
class RunContext:
    """One run's collaborators, shared by the loop and its phase modules."""

    store: Store
    run_id: int
    cfg: RunConfig
    task: Task
    models: ModelSlots
    on_progress: Progress | None = None
    on_log: Callable[[str, str], None] | None = None
    safe_point: Callable[[], None] | None = None
    unlabeled_cache: tuple[Any, Any] | None = field(default=None, repr=False)  # data.unlabeled and its index

    def log(self, message: str, *, kind: str = "info", level: str = "info", **data: Any) -> None:
        """Record an event (and echo it to the CLI)."""
        self.store.log(self.run_id, message, kind=kind, level=level, **data)
        if self.on_log is not None:
            self.on_log(message, kind)

    def progress(self, round_idx: int, phase: str, unit: str | None = None) -> ProgressWriter:
        """A coalescing progress writer for one phase (each call a safe point)."""
        return ProgressWriter(self.store, self.run_id, round_idx, phase, self.on_progress, unit=unit,
                              safe_point=self.safe_point)

    def finish_phase(self, idx: int, phase: str, meter: PhaseMeter, next_phase: str,
                     details: dict[str, Any] | None = None, **fields: Any) -> None:
        """Write the phase's measurements and details and flip the round to its next phase (caller holds the
        transaction)."""
        current = self.store.round(self.run_id, idx)
        phases: dict[str, Any] = dict(current.phases) if current is not None else {}
        # wall_seconds also counts what follows the meter (saving, store writes): the engine's overhead
        phases[phase] = {**meter.result(), "wall_seconds": round(time.perf_counter() - meter.start, 3), "ended": now(),
                         **(details or {})}
        self.store.upsert_round(self.run_id, idx, phase=next_phase, phases=phases, **fields)

    def training_examples(self, idx: int) -> list[StoredExample]:
        """What round `idx` trains on: the seeds and the examples kept in earlier rounds."""
        seed = self.store.examples(self.run_id, split="seed")
        synthetic = [r for r in self.store.examples(self.run_id, split="synthetic", status="kept")
                     if r.origin_round is not None and r.origin_round < idx]
        return seed + synthetic

    def limited(self, split: str, limit: int | None) -> list[StoredExample]:
        """A split's examples, the first `limit` of them when a limit is set."""
        rows = self.store.examples(self.run_id, split=split)
        return rows[:limit] if limit else rows

    def teacher_identity(self, meter: PhaseMeter) -> str:
        """The teacher's cache identity (loads the teacher: the identity hashes its model file)."""
        return self.models.teacher(meter).identity()

    def call_teacher(self, idx: int, phase: str, requests: list[TeacherRequest], meter: PhaseMeter, purpose: str,
                     on_parsed: Callable[[str, dict[str, Any]], None] | None = None) -> tuple[int, set[str]]:
        """Answer requests from the cache or the teacher (each reply committed as it arrives: never paid twice);
        returns (cache hits, keys the teacher answered now)."""
        todo = [r for r in requests if self.store.teacher_call(r.key) is None]
        if not todo:
            return len(requests), set()
        teacher = self.models.teacher(meter)
        identity = teacher.identity()
        prog = self.progress(idx, phase)
        done = [len(requests) - len(todo)]
        prog(done[0], len(requests))
        prompts = {r.key: r.messages for r in todo}

        answered = [0]

        def on_reply(reply: Any) -> None:
            answered[0] += 1
            fault_point(phase, idx, f"unsaved{answered[0]}")  # came back, not committed yet
            self.store.save_teacher_call({
                "key": reply.key, "model": identity, "prompt": json.dumps(prompts[reply.key]), "response": reply.text,
                "ok": int(reply.error is None), "tokens_in": reply.tokens_in, "tokens_out": reply.tokens_out,
                "seconds": reply.seconds, "error": reply.error, "run_id": self.run_id, "round": idx, "purpose": purpose})
            fault_point(phase, idx, f"reply{answered[0]}")
            if reply.parsed is not None and on_parsed is not None:
                on_parsed(reply.key, reply.parsed)
            done[0] += 1
            prog(done[0], len(requests))  # a safe point: this reply is committed

        t0 = time.perf_counter()
        teacher.generate(todo, on_reply=on_reply)
        meter.mark("compute", time.perf_counter() - t0)
        return len(requests) - len(todo), set(prompts)
