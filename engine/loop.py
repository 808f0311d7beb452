"""The LLM2LLM loop: train → evaluate → augment → filter, one committed phase at a time, resumable."""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.config import RunConfig
from engine.dedup import DedupIndex
from engine.meter import PhaseMeter
from engine.store import Store, now
from engine.tasks.base import Example, Task
from engine.tasks.registry import make_task

Progress = Callable[[str, int, int], None]


class StopRequested(Exception):
    """Raised between phases when the user asked the run to stop."""


def example_from_row(row: dict[str, Any]) -> Example:
    """Rebuild an Example from a store row."""
    choices = tuple(row["choices"]) if row.get("choices") else None
    return Example(input=row["input"], target=row["target"], answer=row["answer"], choices=choices, meta=row.get("meta") or {})


def content_hash(ex: Example) -> str:
    """Stable hash of an example's content."""
    payload = json.dumps([ex.input, ex.target, ex.answer, list(ex.choices or [])], ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class ProgressWriter:
    """Coalesces progress callbacks into at most a few store writes per second."""

    def __init__(self, store: Store, run_id: int, round_idx: int, phase: str, echo: Progress | None,
                 min_interval: float = 0.5) -> None:
        self.store, self.run_id, self.round_idx, self.phase = store, run_id, round_idx, phase
        self.echo = echo
        self.min_interval = min_interval
        self.started = time.time()
        self.last = 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        t = time.monotonic()
        if self.echo is not None:
            self.echo(self.phase, done, total)
        if done >= total or t - self.last >= self.min_interval:
            self.last = t
            self.store.set_progress(self.run_id, self.round_idx, self.phase, done, total, message, started=self.started)


class Loop:
    """Runs (or resumes) one run of the store until it finishes or is stopped."""

    def __init__(self, store: Store, run_id: int, *, on_progress: Progress | None = None,
                 on_log: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        run = store.run(run_id)
        self.cfg = RunConfig.model_validate(run["config"])
        self.task: Task = make_task(self.cfg.task)
        self.workdir = Path(run["splits"].get("workdir") or store.path.parent / "runs" / str(run_id))
        self.on_progress = on_progress
        self.on_log = on_log
        self._student: Any = None
        self._student_adapter: str | None = None
        self._teacher: Any = None

    # plumbing ---------------------------------------------------------------------------------
    def log(self, message: str, *, kind: str = "info", level: str = "info", **data: Any) -> None:
        """Record an event (and echo it to the CLI)."""
        self.store.log(self.run_id, message, kind=kind, level=level, **data)
        if self.on_log is not None:
            self.on_log(message, kind)

    def progress(self, round_idx: int, phase: str) -> ProgressWriter:
        """A coalescing progress writer for one phase."""
        return ProgressWriter(self.store, self.run_id, round_idx, phase, self.on_progress)

    def _check_stop(self) -> None:
        if self.store.run(self.run_id)["stop_requested"]:
            raise StopRequested

    def _finish_phase(self, idx: int, phase: str, meter: PhaseMeter, next_phase: str, **fields: Any) -> None:
        """Write the phase's measurements and flip the round to its next phase (caller holds the transaction)."""
        current = self.store.round(self.run_id, idx) or {"phases": {}}
        phases = dict(current.get("phases") or {})
        # wall_seconds also counts what follows the meter (saving, store writes): the engine's overhead
        phases[phase] = {**meter.result(), "wall_seconds": round(time.perf_counter() - meter.start, 3), "ended": now()}
        self.store.upsert_round(self.run_id, idx, phase=next_phase, phases=phases, **fields)

    # the loop ---------------------------------------------------------------------------------
    def run(self) -> str:
        """Run phases until the run is finished; returns the final status."""
        self.store.update_run(self.run_id, status="running", pid=os.getpid(), error=None, stop_requested=0)
        self.log(f"run {self.run_id} started (pid {os.getpid()})", kind="status")
        previous = signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        try:
            while True:
                current = self._current_round()
                if current is None:
                    self._report()
                    self.store.update_run(self.run_id, status="finished", ended=now())
                    self.log("run finished", kind="status")
                    return "finished"
                idx, phase = current["idx"], current["phase"]
                getattr(self, f"_phase_{phase}")(idx)
                self._check_stop()
        except StopRequested:
            self.store.update_run(self.run_id, status="stopped", ended=now(), stop_requested=0)
            self.log("stopped at the user's request after a finished phase", kind="status")
            return "stopped"
        except KeyboardInterrupt:
            self.store.update_run(self.run_id, status="stopped", ended=now())
            self.log("interrupted; the phase in flight will be redone on resume", kind="status", level="warning")
            return "stopped"
        except Exception as err:
            self.store.update_run(self.run_id, status="failed", ended=now(), error=f"{type(err).__name__}: {err}")
            self.log(f"failed: {type(err).__name__}: {err}", kind="status", level="error")
            raise
        finally:
            signal.signal(signal.SIGTERM, previous)
            self._free_student()
            self._close_teacher()
            self.store.db.execute("DELETE FROM progress WHERE run_id = ?", [self.run_id])

    def _current_round(self) -> dict[str, Any] | None:
        rounds = self.store.rounds(self.run_id)
        if not rounds:
            with self.store.transaction():
                self.store.upsert_round(self.run_id, 0, phase="train")
            return self.store.round(self.run_id, 0)
        last = rounds[-1]
        return None if last["phase"] == "done" else last

    # train --------------------------------------------------------------------------------------
    def _training_examples(self, idx: int) -> list[dict[str, Any]]:
        seed = self.store.examples(self.run_id, split="seed")
        synthetic = [r for r in self.store.examples(self.run_id, split="synthetic", status="kept") if r["origin_round"] < idx]
        return seed + synthetic

    def _phase_train(self, idx: int) -> None:
        rows = self._training_examples(idx)
        pairs = [(self.task.render_prompt(ex), self.task.render_response(ex)) for ex in map(example_from_row, rows)]
        adapter_dir = self.workdir / f"round-{idx}" / "adapter"
        init = None
        if self.cfg.loop.retrain_from == "previous" and idx > 0:
            init = self.store.round(self.run_id, idx - 1)["adapter_path"]
        self.log(f"round {idx}: training on {len(pairs)} examples ({len(rows) - self.store.count('examples', run_id=self.run_id, split='seed')} synthetic)", kind="phase")
        with PhaseMeter() as meter:
            student = self._load_student(meter, adapter=None)
            prog = self.progress(idx, "train")
            stats = student.train(pairs, self.cfg.train, seed=self.cfg.seed + idx, out_dir=adapter_dir,
                                  on_step=lambda step, total, loss: prog(step, total, f"loss {loss:.4f}"),
                                  init_adapter=Path(init) if init else None)
            meter.mark("compute", stats.seconds)
            self._student_adapter = str(adapter_dir)
        _save_resolved_config(adapter_dir.parent, self.cfg)
        fault_point("train", idx)
        with self.store.transaction():
            self._finish_phase(idx, "train", meter, "eval", train_size=len(pairs), adapter_path=str(adapter_dir),
                               train_loss=stats.mean_loss)
            current = self.store.round(self.run_id, idx)
            phases = current["phases"]
            phases["train"].update(steps=stats.steps, tokens=stats.tokens, tokens_per_s=round(stats.tokens_per_s, 1),
                                   final_loss=stats.final_loss, trainable_params=stats.trainable_params)
            self.store.upsert_round(self.run_id, idx, phases=phases)
        self.log(f"round {idx}: trained {stats.steps} steps in {meter.seconds:.1f}s, loss {stats.mean_loss:.4f}", kind="phase")

    # eval ---------------------------------------------------------------------------------------
    def _phase_eval(self, idx: int) -> None:
        round_row = self.store.round(self.run_id, idx)
        splits: dict[str, list[dict[str, Any]]] = {}
        if self.cfg.loop.miss_source == "all":
            splits["train"] = self._training_examples(idx)
        else:
            splits["seed"] = self.store.examples(self.run_id, split="seed")
        validation = self.store.examples(self.run_id, split="validation")
        splits["validation"] = validation[: self.cfg.eval.validation_limit] if self.cfg.eval.validation_limit else validation
        if self.cfg.loop.score_test_every_round:
            test = self.store.examples(self.run_id, split="test")
            splits["test"] = test[: self.cfg.eval.test_limit] if self.cfg.eval.test_limit else test
        with PhaseMeter() as meter:
            student = self._load_student(meter, adapter=round_row["adapter_path"])
            t0 = time.perf_counter()
            predictions = self._predict(student, idx, [r for rows in splits.values() for r in rows])
            meter.mark("compute", time.perf_counter() - t0)
        by_id = {p["example_id"]: p for p in predictions}
        acc: dict[str, float | None] = {}
        for name, rows in splits.items():
            acc[name] = sum(by_id[r["id"]]["correct"] for r in rows) / len(rows) if rows else None
        pool = splits.get("seed") or splits.get("train") or []
        misses = [r for r in pool if self._is_miss(by_id[r["id"]])]
        last_round = idx >= self.cfg.loop.rounds - 1
        reason = self._stop_reason(idx, acc.get("validation"), len(misses), last_round)
        fault_point("eval", idx)
        with self.store.transaction():
            self.store.insert_predictions(predictions)
            self._finish_phase(idx, "eval", meter, "done" if reason else "augment",
                               seed_acc=acc.get("seed", acc.get("train")), val_acc=acc.get("validation"),
                               test_acc=acc.get("test"), misses=len(misses))
        self.log(f"round {idx}: seed acc {_pct(acc.get('seed', acc.get('train')))}, validation {_pct(acc.get('validation'))}, "
                 f"test {_pct(acc.get('test'))}, {len(misses)} misses ({meter.seconds:.1f}s)", kind="phase")
        if reason:
            self.log(f"stopping after round {idx}: {reason}", kind="status")

    def _is_miss(self, pred: dict[str, Any]) -> bool:
        threshold = self.cfg.loop.confidence_threshold
        if not pred["correct"]:
            return True
        return threshold is not None and pred["confidence"] is not None and pred["confidence"] < threshold

    def _stop_reason(self, idx: int, val_acc: float | None, misses: int, last_round: bool) -> str | None:
        if last_round:
            return f"reached loop.rounds = {self.cfg.loop.rounds}"
        if misses == 0:
            return "no misses left"
        patience = self.cfg.loop.patience
        if patience and val_acc is not None:
            history = [r["val_acc"] for r in self.store.rounds(self.run_id) if r["idx"] < idx and r["val_acc"] is not None]
            if len(history) >= patience and max(history[-patience:] + [val_acc]) <= max(history[:-patience] or [-1.0]):
                return f"validation accuracy has not improved for {patience} rounds"
        return None

    def _predict(self, student: Any, idx: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        examples = [example_from_row(r) for r in rows]
        prompts = [self.task.render_prompt(ex) for ex in examples]
        prog = self.progress(idx, "eval")
        options = [self.task.label_options(ex) for ex in examples]
        out: list[dict[str, Any]] = []
        if all(o is not None for o in options):
            scores = student.score_options(prompts, options, self.cfg.eval.batch_size, on_progress=prog)
            for row, ex, opts, logps in zip(rows, examples, options, scores):
                best = max(range(len(opts)), key=lambda i: logps[i])
                confidence = _softmax_at(logps, best)
                extracted = self.task.extract(opts[best], ex)
                out.append(self._prediction(idx, row, opts[best], extracted, ex, confidence))
        else:
            texts = student.generate(prompts, self.cfg.eval.max_new_tokens, self.task.stop, self.cfg.eval.batch_size, on_progress=prog)
            for row, ex, text in zip(rows, examples, texts):
                out.append(self._prediction(idx, row, text, self.task.extract(text, ex), ex, None))
        return out

    def _prediction(self, idx: int, row: dict[str, Any], output: str, extracted: str | None, ex: Example,
                    confidence: float | None) -> dict[str, Any]:
        return {"run_id": self.run_id, "round": idx, "example_id": row["id"], "split": row["split"], "output": output,
                "extracted": extracted, "correct": int(self.task.is_correct(extracted, ex)), "confidence": confidence}

    # augment ------------------------------------------------------------------------------------
    def _miss_rows(self, idx: int) -> list[dict[str, Any]]:
        preds = {p["example_id"]: p for p in self.store.predictions(self.run_id, idx)}
        source = self.store.examples(self.run_id, split="seed")
        if self.cfg.loop.miss_source == "all":
            source = self._training_examples(idx)
        return [dict(r, prediction=preds[r["id"]]) for r in source if r["id"] in preds and self._is_miss(preds[r["id"]])]

    def _phase_augment(self, idx: int) -> None:
        from models.teacher.base import TeacherRequest

        misses = self._miss_rows(idx)
        k = self.cfg.loop.examples_per_miss
        tcfg = self.cfg.teacher
        schema = self.task.teacher_schema(k)
        requests: list[TeacherRequest] = []
        parents: dict[str, dict[str, Any]] = {}
        self._free_student()
        with PhaseMeter() as meter:
            teacher = self._load_teacher(meter)
            identity = teacher.identity()
            for miss in misses:
                ex = example_from_row(miss)
                messages = self.task.teacher_messages(ex, miss["prediction"]["output"], k)
                seed = _derive_seed(tcfg.seed if tcfg.seed is not None else self.cfg.seed, idx, miss["content_hash"])
                key = _cache_key(identity, messages, schema, tcfg.temperature, tcfg.top_p, tcfg.max_tokens, seed)
                parents[key] = miss
                requests.append(TeacherRequest(key=key, messages=messages, schema=schema, max_tokens=tcfg.max_tokens,
                                               temperature=tcfg.temperature, top_p=tcfg.top_p, seed=seed))
            cached = {r.key: self.store.teacher_call(r.key) for r in requests}
            todo = [r for r in requests if cached[r.key] is None]
            hits = len(requests) - len(todo)
            self.log(f"round {idx}: asking the teacher about {len(misses)} misses ({k} each); {hits} answered from the cache", kind="phase")
            prog = self.progress(idx, "augment")
            done = [hits]
            prog(hits, len(requests))

            def on_reply(reply: Any) -> None:
                self.store.save_teacher_call({
                    "key": reply.key, "model": identity, "prompt": json.dumps(next(r.messages for r in todo if r.key == reply.key)),
                    "response": reply.text, "ok": int(reply.error is None), "tokens_in": reply.tokens_in,
                    "tokens_out": reply.tokens_out, "seconds": reply.seconds, "error": reply.error,
                    "run_id": self.run_id, "round": idx})
                done[0] += 1
                prog(done[0], len(requests))
                if reply.parsed is not None:
                    for item in reply.parsed.get("examples", []):
                        self.log(json.dumps(item, ensure_ascii=False)[:500], kind="teacher", parent=parents[reply.key]["id"])

            if todo:
                t0 = time.perf_counter()
                teacher.generate(todo, on_reply=on_reply)
                meter.mark("compute", time.perf_counter() - t0)
        candidates: list[dict[str, Any]] = []
        failed = 0
        tokens_out = 0
        gen_seconds = 0.0
        for request in requests:
            call = self.store.teacher_call(request.key)
            if call is None or not call["ok"]:
                failed += 1
                continue
            if request.key in {r.key for r in todo}:
                tokens_out += call["tokens_out"] or 0
                gen_seconds += call["seconds"] or 0.0
            parent = parents[request.key]
            for ex in self.task.parse_teacher(json.loads(call["response"]), example_from_row(parent)):
                candidates.append({
                    "run_id": self.run_id, "split": "synthetic", "input": ex.input, "target": ex.target, "answer": ex.answer,
                    "choices": list(ex.choices) if ex.choices else None, "origin_round": idx, "parent_id": parent["id"],
                    "teacher_call": request.key, "content_hash": content_hash(ex), "status": "pending", "meta": ex.meta or None,
                })
        fault_point("augment", idx)
        with self.store.transaction():
            self.store.insert_examples(candidates)
            self._finish_phase(idx, "augment", meter, "filter", generated=len(candidates))
            current = self.store.round(self.run_id, idx)
            current["phases"]["augment"].update(requests=len(requests), cache_hits=hits, failed_calls=failed,
                                                tokens_out=tokens_out,
                                                tokens_per_s=round(tokens_out / gen_seconds, 2) if gen_seconds else None)
            self.store.upsert_round(self.run_id, idx, phases=current["phases"])
        self.log(f"round {idx}: teacher wrote {len(candidates)} candidates ({failed} calls unusable, {meter.seconds:.1f}s)", kind="phase")

    # filter -------------------------------------------------------------------------------------
    def _phase_filter(self, idx: int) -> None:
        with PhaseMeter() as meter:
            index = DedupIndex(self.cfg.loop.near_duplicate)
            for row in self.store.examples(self.run_id):
                if row["split"] != "synthetic" or row["status"] == "kept":
                    index.add(row["input"], row["id"])
            pending = self.store.examples(self.run_id, split="synthetic", status="pending", origin_round=idx)
            decisions: list[tuple[int, str, str | None]] = []
            for row in pending:
                reason = self.task.reject_reason(example_from_row(row))
                if reason is None:
                    hit = index.match(row["input"])
                    if hit is not None:
                        reason = hit[0]
                if reason is None:
                    index.add(row["input"], row["id"])
                    decisions.append((row["id"], "kept", None))
                else:
                    decisions.append((row["id"], "rejected", reason))
        reasons = Counter(reason for _, status, reason in decisions if status == "rejected")
        kept = sum(1 for _, status, _ in decisions if status == "kept")
        fault_point("filter", idx)
        with self.store.transaction():
            for example_id, status, reason in decisions:
                self.store.db["examples"].update(example_id, {"status": status, "reason": reason})
            self._finish_phase(idx, "filter", meter, "done", kept=kept, rejected=len(decisions) - kept)
            current = self.store.round(self.run_id, idx)
            current["phases"]["filter"]["reasons"] = dict(reasons)
            self.store.upsert_round(self.run_id, idx, phases=current["phases"])
            self.store.upsert_round(self.run_id, idx + 1, phase="train")
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none rejected"
        self.log(f"round {idx}: kept {kept} of {len(decisions)} new examples ({detail})", kind="phase")

    def _phase_done(self, idx: int) -> None:  # pragma: no cover - _current_round never returns a done round
        raise AssertionError("done rounds are not run")

    # report -------------------------------------------------------------------------------------
    def _report(self) -> None:
        """Pick the best round on validation (earliest on ties) and make sure its test score exists."""
        rounds = [r for r in self.store.rounds(self.run_id) if r["val_acc"] is not None]
        if not rounds:
            return
        best = max(rounds, key=lambda r: (r["val_acc"], -r["idx"]))
        if best["test_acc"] is None:
            test = self.store.examples(self.run_id, split="test")
            test = test[: self.cfg.eval.test_limit] if self.cfg.eval.test_limit else test
            if test:
                with PhaseMeter() as meter:
                    student = self._load_student(meter, adapter=best["adapter_path"])
                    preds = self._predict(student, best["idx"], test)
                acc = sum(p["correct"] for p in preds) / len(preds)
                with self.store.transaction():
                    self.store.insert_predictions(preds)
                    self.store.upsert_round(self.run_id, best["idx"], test_acc=acc)
        self.store.update_run(self.run_id, best_round=best["idx"])
        best = self.store.round(self.run_id, best["idx"])
        self.log(f"best round on validation: {best['idx']} (validation {_pct(best['val_acc'])}, test {_pct(best['test_acc'])})", kind="status")

    # models -------------------------------------------------------------------------------------
    def _load_student(self, meter: PhaseMeter, adapter: str | None) -> Any:
        """The student with the wanted adapter (None: bare base, ready to train); loaded at most once per phase."""
        if self._student is not None and (adapter is None or adapter == self._student_adapter):
            return self._student
        from models.catalog import resolve_model
        from models.convert import resolve_student_folder
        from models.device import plan_training
        from models.paths import model_cache
        from models.student import Student

        self._free_student()
        self._close_teacher()
        t0 = time.perf_counter()
        folder = resolve_student_folder(resolve_model(self.cfg.student.model), model_cache())
        plan = plan_training(self.cfg.student.quantization)
        if self.store.run(self.run_id).get("plan") is None:
            self.store.update_run(self.run_id, plan={"mode": plan.mode, "device": plan.device, "reason": plan.reason})
            self.log(f"student: {plan.mode} on {plan.device} ({plan.reason})", kind="info")
        self._student = Student.load(folder, plan, self.cfg.lora, self.cfg.student.max_length,
                                     gradient_checkpointing=self.cfg.student.gradient_checkpointing,
                                     adapter=Path(adapter) if adapter else None)
        self._student_adapter = adapter
        meter.mark("load", time.perf_counter() - t0)
        return self._student

    def _free_student(self) -> None:
        if self._student is not None:
            self._student.free()
            self._student = None
            self._student_adapter = None

    def _load_teacher(self, meter: PhaseMeter) -> Any:
        if self._teacher is None:
            from models.teacher import open_teacher

            t0 = time.perf_counter()
            path = None
            if self.cfg.teacher.backend == "llama_cpp":
                from models.catalog import resolve_model

                path = resolve_model(self.cfg.teacher.model)
            self._teacher = open_teacher(self.cfg.teacher, path, self.cfg.seed)
            meter.mark("load", time.perf_counter() - t0)
            self.log(f"teacher: {json.dumps(self._teacher.info(), default=str)}", kind="info")
        return self._teacher

    def _close_teacher(self) -> None:
        if self._teacher is not None:
            self._teacher.close()
            self._teacher = None


def fault_point(phase: str, idx: int) -> None:
    """Fault injection for the crash tests: L2L_FAULT='augment:0:kill' kills -9 (or ':int' interrupts) here."""
    spec = os.environ.get("L2L_FAULT")
    if not spec:
        return
    where, _, how = spec.rpartition(":")
    if where == f"{phase}:{idx}":
        if how == "kill":
            os.kill(os.getpid(), signal.SIGKILL)
        raise KeyboardInterrupt


def _raise_keyboard_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _softmax_at(logps: list[float], i: int) -> float:
    top = max(logps)
    z = sum(math.exp(v - top) for v in logps)
    return math.exp(logps[i] - top) / z


def _derive_seed(base: int, round_idx: int, example_hash: str) -> int:
    # from content, not row ids: the same miss in another run must hit the teacher cache
    digest = hashlib.sha256(f"{base}:{round_idx}:{example_hash}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def _cache_key(identity: str, messages: list[dict[str, str]], schema: dict[str, Any], temperature: float,
               top_p: float, max_tokens: int, seed: int) -> str:
    payload = json.dumps([identity, messages, schema, temperature, top_p, max_tokens, seed], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def _save_resolved_config(folder: Path, cfg: RunConfig) -> None:
    """The resolved config beside every checkpoint (litgpt-style)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
