"""The LLM2LLM loop: train → evaluate → augment → filter, one committed phase at a time, resumable."""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.augment.requests import (
    choose_targets,
    copies_its_seed,
    earlier_candidates,
    grounding,
    hot_request,
    read_write_call,
    verify_request,
    verify_shots,
    verify_verdict,
    write_request,
)
from engine.config.schema import RunConfig
from engine.data.example_rows import example_from_row, example_row
from engine.filter.filtering import CandidateFilter
from engine.run.checkpoints import publish, save_resolved_config, staging_folder
from engine.run.failures import RunFailed, append_traceback, failure_cause, worker_log
from engine.run.faults import fault_point, torn_adapter_save
from engine.run.meter import PhaseMeter
from engine.run.model_slots import ModelSlots, describe_teacher, scorer_of, trainer_of
from engine.run.progress_writer import Progress, ProgressWriter
from engine.run.runs import claim
from engine.run.scoring import accuracy, is_miss, predict
from engine.run.signals import Interrupted, Signals, StopRequested
from engine.run.tracking import RunTracking
from engine.store.db import Store, now, run_folder
from engine.store.rows import Prediction, Round, StoredExample
from engine.store.status import RunStatus
from engine.tasks.base import Task
from engine.tasks.registry import make_task
from models.params import Selection
from models.teacher.base import TeacherRequest

__all__ = ["Loop"]


class Loop:
    """Runs (or resumes) one run of the store until it finishes or is stopped."""

    def __init__(self, store: Store, run_id: int, *, on_progress: Progress | None = None,
                 on_log: Callable[[str, str], None] | None = None) -> None:
        self.store = store
        self.run_id = run_id
        run = store.run(run_id)
        self.cfg = RunConfig.model_validate(run.config)
        self.task: Task = make_task(self.cfg.task)
        self.workdir = Path(run.splits.get("workdir") or run_folder(store.path, run_id))
        self.on_progress = on_progress
        self.on_log = on_log
        self.models = ModelSlots(self.cfg, on_plan=self._record_plan, on_teacher=self._record_teacher)
        self.signals = Signals()
        self._pool: tuple[Any, Any] | None = None  # data.unlabeled and its BM25 index, once per process
        self.tracking = RunTracking(store, run_id, self.cfg, self.log)  # off unless tracking.mlflow is set

    # plumbing ---------------------------------------------------------------------------------
    def log(self, message: str, *, kind: str = "info", level: str = "info", **data: Any) -> None:
        """Record an event (and echo it to the CLI)."""
        self.store.log(self.run_id, message, kind=kind, level=level, **data)
        if self.on_log is not None:
            self.on_log(message, kind)

    def progress(self, round_idx: int, phase: str, unit: str | None = None) -> ProgressWriter:
        """A coalescing progress writer for one phase (each call a safe point)."""
        return ProgressWriter(self.store, self.run_id, round_idx, phase, self.on_progress, unit=unit,
                              safe_point=self.signals.check)

    def _record_plan(self, plan: dict[str, str]) -> None:
        if self.store.run(self.run_id).plan is None:
            self.store.update_run(self.run_id, plan=plan)
            self.log(f"student: {plan['mode']} on {plan['device']} ({plan['reason']})", kind="info")

    def _record_teacher(self, info: dict[str, Any]) -> None:
        if self.store.run(self.run_id).teacher is None:  # said once per run, in one line
            self.store.update_run(self.run_id, teacher=info)
            self.log(f"teacher: {describe_teacher(info)}", kind="info")

    def _check_stop(self) -> None:
        if self.store.run(self.run_id).stop_requested:
            raise StopRequested

    def _finish_phase(self, idx: int, phase: str, meter: PhaseMeter, next_phase: str, details: dict[str, Any] | None = None,
                      **fields: Any) -> None:
        """Write the phase's measurements and details and flip the round to its next phase (caller holds the transaction)."""
        current = self.store.round(self.run_id, idx)
        phases: dict[str, Any] = dict(current.phases) if current is not None else {}
        # wall_seconds also counts what follows the meter (saving, store writes): the engine's overhead
        phases[phase] = {**meter.result(), "wall_seconds": round(time.perf_counter() - meter.start, 3), "ended": now(),
                         **(details or {})}
        self.store.upsert_round(self.run_id, idx, phase=next_phase, phases=phases, **fields)

    # the loop ---------------------------------------------------------------------------------
    def run(self) -> str:
        """Run phases until the run is finished; returns the final status. Refused (StoreError, nothing touched) while
        another live process runs it; a failure is stored as one line and raised as RunFailed."""
        claim(self.store, "runs", self.run_id, "run")
        # everything the run writes (adapters, configs, logs) is for the owner only
        umask = os.umask(0o077)
        self.store.update_run(self.run_id, stop_requested=0)
        self.log(f"run {self.run_id} started (pid {os.getpid()})", kind="status")
        self.signals.install()
        try:
            while True:
                current = self._current_round()
                if current is None:
                    self._report()
                    fault_point("report", 0)
                    self.store.update_run(self.run_id, status=RunStatus.FINISHED, ended=now())
                    self.log("run finished", kind="status")
                    return "finished"
                idx, phase = current.idx, current.phase
                getattr(self, f"_phase_{phase}")(idx)
                self.tracking.phase_done()
                fault_point(phase, idx, "done")
                self.signals.check()
                self._check_stop()
        except StopRequested:
            self.store.update_run(self.run_id, status=RunStatus.STOPPED, ended=now(), stop_requested=0)
            self.log("stopped at the user's request after a finished phase", kind="status")
            return "stopped"
        except KeyboardInterrupt as err:
            self.store.update_run(self.run_id, status=RunStatus.STOPPED, ended=now())
            if isinstance(err, Interrupted):
                self.log(f"stopped at a safe point after {err}; the phase in flight is redone on resume (teacher "
                         "replies already committed are kept)", kind="status", level="warning")
            else:
                self.log("interrupted; the phase in flight will be redone on resume", kind="status", level="warning")
            return "stopped"
        except Exception as err:
            raise self._failed(err) from err
        finally:
            self.tracking.end()  # before the handlers go back: a Ctrl-C during an upload is a polite stop
            self.signals.restore()
            self.models.close()
            try:
                self.store.clear_progress(self.run_id)
            except Exception:  # noqa: BLE001 - a full disk must not hide the failure being reported
                pass
            os.umask(umask)

    def _failed(self, err: Exception) -> RunFailed:
        """Store the one-line cause on the run (best effort: the store may be what failed), the traceback in the log."""
        cause = failure_cause(err)
        log = worker_log(self.store.path, self.run_id)
        logged = append_traceback(log, err, f"{now()} run {self.run_id} failed: {cause}")
        try:
            self.store.update_run(self.run_id, status=RunStatus.FAILED, ended=now(), error=cause)
            self.log(f"failed: {cause}", kind="status", level="error")
        except Exception:  # noqa: BLE001
            pass
        return RunFailed(f"run {self.run_id} failed: {cause}" + (f" (traceback in {log})" if logged else ""))

    def _current_round(self) -> Round | None:
        rounds = self.store.rounds(self.run_id)
        if not rounds:
            with self.store.transaction():
                self.store.upsert_round(self.run_id, 0, phase="train")
            return self.store.round(self.run_id, 0)
        last = rounds[-1]
        return None if last.phase == "done" else last

    # train --------------------------------------------------------------------------------------
    def _training_examples(self, idx: int) -> list[StoredExample]:
        seed = self.store.examples(self.run_id, split="seed")
        synthetic = [r for r in self.store.examples(self.run_id, split="synthetic", status="kept")
                     if r.origin_round is not None and r.origin_round < idx]
        return seed + synthetic

    def _phase_train(self, idx: int) -> None:
        rows = self._training_examples(idx)
        pairs = [(self.task.render_prompt(ex), self.task.render_response(ex)) for ex in map(example_from_row, rows)]
        adapter_dir = self.workdir / f"round-{idx}" / "adapter"
        staging = staging_folder(adapter_dir)
        init = None
        if self.cfg.loop.retrain_from == "previous" and idx > 0:
            init = self.store.existing_round(self.run_id, idx - 1).adapter_path
        synthetic = sum(1 for r in rows if r.split == "synthetic")
        self.log(f"round {idx}: training on {len(pairs)} examples ({synthetic} synthetic)", kind="phase")
        with PhaseMeter() as meter:
            student = self.models.student(meter, adapter=None)
            prog = self.progress(idx, "train", unit="step")
            with torn_adapter_save(idx):
                stats = trainer_of(student).train(pairs, self.cfg.train.params(), seed=self.cfg.seed + idx, out_dir=staging,
                                                  on_step=lambda step, total, loss: prog(step, total, f"loss {loss:.4f}"),
                                                  init_adapter=Path(init) if init else None,
                                                  selection=self._selection(scorer_of(student), idx))
            meter.mark("compute", stats.seconds)
            publish(staging, adapter_dir)
            self.models.trained(str(adapter_dir))
        save_resolved_config(adapter_dir.parent, self.cfg)
        fault_point("train", idx)
        with self.store.transaction():
            self._finish_phase(idx, "train", meter, "eval", train_size=len(pairs), adapter_path=str(adapter_dir),
                               train_loss=stats.mean_loss,
                               details={"steps": stats.steps, "steps_run": stats.steps_run,
                                        "selection": [[s, round(v, 4)] for s, v in stats.selection],
                                        "threads": self.models.threads_used(), "tokens": stats.tokens,
                                        "tokens_per_s": round(stats.tokens_per_s, 1), "final_loss": stats.final_loss,
                                        "trainable_params": stats.trainable_params,
                                        "label_mix": self._label_mix(rows)})
        chosen = f" (of {stats.steps_run} run; chosen on validation)" if stats.selection else ""
        self.log(f"round {idx}: trained {stats.steps} steps{chosen} in {meter.seconds:.1f}s, loss {stats.mean_loss:.4f}",
                 kind="phase")

    def _selection(self, scorer: Any, idx: int) -> Selection | None:
        """How the training length is chosen on validation (train.eval_every), or None to train the planned steps."""
        if not self.cfg.train.eval_every:
            return None
        rows = self._limited("validation", self.cfg.eval.validation_limit)
        if not rows:
            return None

        def score() -> float:
            preds = predict(self.task, scorer, rows, round_idx=idx, batch_size=self.cfg.eval.batch_size,
                            max_new_tokens=self.cfg.eval.max_new_tokens)
            return accuracy(preds) or 0.0

        return Selection(score=score, every=self.cfg.train.eval_every, patience=self.cfg.train.patience)

    def _label_mix(self, rows: list[StoredExample]) -> dict[str, int] | None:
        """Training examples per label (classification and multiple choice)."""
        if self.task.kind not in ("classification", "multiple_choice"):
            return None
        return dict(sorted(Counter(r.answer for r in rows).items()))

    # eval ---------------------------------------------------------------------------------------
    def _eval_splits(self, idx: int) -> dict[str, list[StoredExample]]:
        splits: dict[str, list[StoredExample]] = {}
        if self.cfg.loop.miss_source == "all":
            splits["train"] = self._training_examples(idx)
        else:
            splits["seed"] = self.store.examples(self.run_id, split="seed")
        splits["validation"] = self._limited("validation", self.cfg.eval.validation_limit)
        if self.cfg.loop.score_test_every_round:
            splits["test"] = self._limited("test", self.cfg.eval.test_limit)
        return splits

    def _limited(self, split: str, limit: int | None) -> list[StoredExample]:
        rows = self.store.examples(self.run_id, split=split)
        return rows[:limit] if limit else rows

    def _phase_eval(self, idx: int) -> None:
        round_row = self.store.existing_round(self.run_id, idx)
        splits = self._eval_splits(idx)
        with PhaseMeter() as meter:
            student = self.models.student(meter, adapter=round_row.adapter_path)
            t0 = time.perf_counter()
            predictions = self._predict(scorer_of(student), idx, [r for rows in splits.values() for r in rows])
            meter.mark("compute", time.perf_counter() - t0)
        by_id = {p.example_id: p for p in predictions}
        acc = {name: accuracy([by_id[r.id] for r in rows]) for name, rows in splits.items()}
        pool = splits.get("seed") or splits.get("train") or []
        misses = [r for r in pool if is_miss(by_id[r.id], self.cfg.loop.confidence_threshold)]
        reason = self._stop_reason(idx, acc.get("validation"), len(misses))
        answers = Counter(by_id[r.id].extracted for r in splits["validation"])
        fault_point("eval", idx)
        with self.store.transaction():
            self.store.insert_predictions([asdict(p) for p in predictions])
            self._finish_phase(idx, "eval", meter, "done" if reason else "augment",
                               seed_acc=acc.get("seed", acc.get("train")), val_acc=acc.get("validation"),
                               test_acc=acc.get("test"), misses=len(misses),
                               details={"validation_answers": {str(k): v for k, v in answers.most_common(12)}})
        self.log(f"round {idx}: seed acc {_pct(acc.get('seed', acc.get('train')))}, validation {_pct(acc.get('validation'))}, "
                 f"test {_pct(acc.get('test'))}, {len(misses)} misses ({meter.seconds:.1f}s)", kind="phase")
        if reason:
            self.log(f"stopping after round {idx}: {reason}", kind="status")

    def _stop_reason(self, idx: int, val_acc: float | None, misses: int) -> str | None:
        if idx >= self.cfg.loop.rounds - 1:
            return f"reached loop.rounds = {self.cfg.loop.rounds}"
        if misses == 0 and self.cfg.loop.targets != "all":
            return "no misses left"
        patience = self.cfg.loop.patience
        if patience and val_acc is not None:
            history = [r.val_acc for r in self.store.rounds(self.run_id) if r.idx < idx and r.val_acc is not None]
            if len(history) >= patience and max(history[-patience:] + [val_acc]) <= max(history[:-patience] or [-1.0]):
                return f"validation accuracy has not improved for {patience} rounds"
        return None

    def _predict(self, scorer: Any, idx: int, rows: list[StoredExample]) -> list[Prediction]:
        return predict(self.task, scorer, rows, round_idx=idx, batch_size=self.cfg.eval.batch_size,
                       max_new_tokens=self.cfg.eval.max_new_tokens, on_progress=self.progress(idx, "eval", unit="batch"))

    # teacher calls ------------------------------------------------------------------------------
    def _call_teacher(self, idx: int, phase: str, requests: list[Any], meter: PhaseMeter, purpose: str,
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

    def _identity(self, meter: PhaseMeter) -> str:
        """The teacher's cache identity (loads the teacher: the identity hashes its model file)."""
        return self.models.teacher(meter).identity()

    # augment ------------------------------------------------------------------------------------
    def _phase_augment(self, idx: int) -> None:
        from models.teacher.base import failure_reason

        preds = {p.example_id: p for p in self.store.predictions(self.run_id, idx)}
        seeds = self.store.examples(self.run_id, split="seed")
        pool = self._training_examples(idx) if self.cfg.loop.miss_source == "all" else seeds
        pool = [r for r in pool if r.id in preds]
        misses = [r for r in pool if is_miss(preds[r.id], self.cfg.loop.confidence_threshold)]
        targets = choose_targets(self.cfg, pool, misses, idx, preds)
        if self.cfg.loop.source != "teacher":
            self._augment_without_teacher(idx, targets, seeds)
            return
        requests: list[TeacherRequest] = []
        parents: dict[str, StoredExample] = {}
        shown_earlier = self.cfg.augment.show_earlier
        earlier = earlier_candidates(self.store.examples(self.run_id, split="synthetic"), idx, shown_earlier) if shown_earlier else {}
        with PhaseMeter() as meter:
            identity = self._identity(meter)
            for target in targets:
                shown = grounding(self.task, target.row, seeds, self.cfg.checks.grounding)
                request = write_request(self.task, self.cfg, identity, idx, target, [example_from_row(r) for r in shown],
                                        earlier.get(target.row.id, []))
                parents[request.key] = target.row
                requests.append(request)
            asked = sum(t.k for t in targets)
            cached = sum(1 for r in requests if self.store.teacher_call(r.key) is not None)
            self.log(f"round {idx}: asking the teacher for {asked} examples from {len(targets)} "
                     f"{_targets_noun(self.cfg.loop.targets)}; {cached} calls answered from the cache", kind="phase")

            def echo(key: str, parsed: dict[str, Any]) -> None:
                for item in parsed.get("examples", []):
                    self.log(json.dumps(item, ensure_ascii=False)[:500], kind="teacher", parent=parents[key].id)

            hits, fresh = self._call_teacher(idx, "augment", requests, meter, "write", on_parsed=echo)

            def read(request: TeacherRequest) -> tuple[list[Any], str | None]:
                return read_write_call(self.task, self.store.teacher_call(request.key), request.schema, parents[request.key])

            def all_copies(request: TeacherRequest) -> bool:
                texts = [ex.input for ex in written[request.key][0]]
                return copies_its_seed(parents[request.key].input, texts, self.cfg.loop.near_duplicate)

            written = {r.key: read(r) for r in requests}
            copied = [r for r in requests if all_copies(r)]
            hot = [hot_request(self.cfg, identity, r) for r in copied] if self.cfg.augment.hot_retry else []
            if hot:  # each all-copy call once more, hotter; its copies stay candidates (the filter rejects and counts them)
                parents.update({h.key: parents[r.key] for h, r in zip(hot, copied, strict=True)})
                hot_hits, hot_fresh = self._call_teacher(idx, "augment", hot, meter, "write", on_parsed=echo)
                hits, fresh = hits + hot_hits, fresh | hot_fresh
                written.update({h.key: read(h) for h in hot})
            hot_copied = sum(all_copies(h) for h in hot)
        candidates: list[dict[str, Any]] = []
        failed = tokens_out = 0
        failed_reasons: Counter[str] = Counter()
        gen_seconds = 0.0
        for request in [*requests, *hot]:
            examples, error = written[request.key]
            if error is not None:
                failed += 1
                failed_reasons[failure_reason(error)] += 1
                continue
            call = self.store.teacher_call(request.key)
            assert call is not None
            if request.key in fresh:
                tokens_out += call.tokens_out or 0
                gen_seconds += call.seconds or 0.0
            parent = parents[request.key]
            for ex in examples:
                candidates.append(example_row(self.run_id, "synthetic", ex, status="pending", origin_round=idx,
                                              parent_id=parent.id, teacher_call=request.key))
        fault_point("augment", idx)
        with self.store.transaction():
            self.store.insert_examples(candidates)
            self._finish_phase(idx, "augment", meter, "filter", generated=len(candidates),
                               details={"requests": len(requests) + len(hot), "examples_requested": asked, "cache_hits": hits,
                                        "failed_calls": failed, "failed_reasons": dict(failed_reasons),
                                        "tokens_out": tokens_out,
                                        "tokens_per_s": round(tokens_out / gen_seconds, 2) if gen_seconds else None,
                                        "targets": self.cfg.loop.targets, "target_misses": sum(t.is_miss for t in targets),
                                        # calls (before any hot retry) whose candidates all copy their example
                                        "copy_calls": len(copied),
                                        "copy_call_share": round(len(copied) / len(requests), 4) if requests else None,
                                        "hot_retries": len(hot), "hot_copy_calls": hot_copied,
                                        "hot_temperature": hot[0].temperature if hot else None})
        copies = f", {len(copied)} all copies of their example" if copied else ""
        if hot:
            copies += f", {len(hot)} asked again hotter ({hot_copied} copied again)"
        self.log(f"round {idx}: teacher wrote {len(candidates)} candidates ({failed} calls unusable{copies}, "
                 f"{meter.seconds:.1f}s)", kind="phase")

    def _augment_without_teacher(self, idx: int, targets: list[Any], seeds: list[StoredExample]) -> None:
        """loop.source = eda (edits of each target), oracle (unused labelled rows nearest it) or pool (unlabeled rows
        nearest it, each verified blind by the teacher in the filter phase: its call is the row's teacher_call)."""
        from engine.augment.sources import eda_candidates, oracle_candidates, pool_candidates

        source = self.cfg.loop.source
        asked = sum(t.k for t in targets)
        details: dict[str, Any] = {}
        with PhaseMeter() as meter:
            if source == "eda":
                made = eda_candidates(self.cfg, idx, targets, seeds)
            elif source == "oracle":
                made = oracle_candidates(self.cfg, self.task, idx, targets, [r.input for r in self.store.examples(self.run_id)])
            else:
                pool, index = self._unlabeled()
                taken = {int(r.meta["pool_row"]) for r in self.store.examples(self.run_id, split="synthetic")
                         if r.meta and r.meta.get("origin") == "pool"}
                made, asked = pool_candidates(self.cfg, idx, targets, pool.texts, pool.rows, taken, str(pool.path), index)
                if len(made) < asked:
                    self.log(f"round {idx}: the unlabeled pool had {len(made)} unused rows for {asked} asked; using what "
                             "there is", kind="phase", level="warning")
                details = {"pool_rows": len(pool.texts), "pool_taken_before": len(taken)}
            identity = self._identity(meter) if source == "pool" else None
            shots = verify_shots(self.task, [example_from_row(r) for r in seeds], self.cfg.checks.verify_shots)
            candidates = [example_row(self.run_id, "synthetic", c.example, status="pending", origin_round=idx,
                                      parent_id=c.parent.id,
                                      teacher_call=verify_request(self.task, self.cfg, c.example, identity, shots).key
                                      if identity is not None else None)
                          for c in made]
        fault_point("augment", idx)
        with self.store.transaction():
            self.store.insert_examples(candidates)
            self._finish_phase(idx, "augment", meter, "filter", generated=len(candidates),
                               details={"source": source, "requests": 0, "examples_requested": asked, **details,
                                        "targets": self.cfg.loop.targets, "target_misses": sum(t.is_miss for t in targets)})
        self.log(f"round {idx}: {source} gave {len(candidates)} candidates for {len(targets)} "
                 f"{_targets_noun(self.cfg.loop.targets)} ({meter.seconds:.1f}s)", kind="phase")

    def _unlabeled(self) -> tuple[Any, Any]:
        """The run's unlabeled pool (data.unlabeled) minus its own texts, and its BM25 index: read and indexed once per
        process (seconds for 100k rows), then every round only queries it."""
        if self._pool is None:
            from engine.augment.unlabeled import load_unlabeled
            from engine.data.retrieval import BM25

            rows = self.store.examples(self.run_id)
            pool = load_unlabeled(self.cfg, self.task, [r.input for r in rows if r.split != "synthetic"],
                                  [r.input for r in rows if r.split == "seed"])
            for note in pool.notes:
                self.log(note, kind="info", level="warning")
            self._pool = (pool, BM25(pool.texts))
        return self._pool

    # filter -------------------------------------------------------------------------------------
    def _phase_filter(self, idx: int) -> None:
        rows = self.store.examples(self.run_id)
        existing = [r for r in rows if r.split != "synthetic" or r.status == "kept"]
        training = [r for r in existing if r.split in ("seed", "synthetic")]
        pending = [r for r in rows if r.split == "synthetic" and r.status == "pending" and r.origin_round == idx]
        verify_stats: dict[str, Any] = {}
        with PhaseMeter() as meter:
            screen = CandidateFilter(self.task, self.cfg.checks, self.cfg.loop.near_duplicate, existing, training)
            verify = None
            if self.cfg.checks.verify and self.task.verifies:
                verify = lambda survivors: self._verify(idx, survivors, meter, verify_stats)  # noqa: E731
            decisions = screen.decide(pending, verify, seed=self.cfg.seed + idx)
            self._keep_limit(idx, decisions)
        reasons = decisions.reasons
        kept = len(decisions.kept)
        mix = Counter(r.answer for r in training) + Counter(r.answer for r in pending if r.id in set(decisions.kept))
        fault_point("filter", idx)
        with self.store.transaction():
            for example_id, reason in decisions.rejected.items():
                self.store.set_example_status(example_id, "rejected", reason)
            for example_id in decisions.kept:
                self.store.set_example_status(example_id, "kept")
            details: dict[str, Any] = {"reasons": dict(reasons), "flags": dict(decisions.flags), **verify_stats}
            if self.task.kind in ("classification", "multiple_choice"):
                details["label_mix_after"] = dict(sorted(mix.items()))
            calls = self.store.existing_round(self.run_id, idx).augment.get("requests") or 0
            details.update(kept_share=round(kept / len(pending), 4) if pending else None,
                           kept_per_call=round(kept / calls, 4) if calls else None)  # calls: the teacher's write calls
            self._finish_phase(idx, "filter", meter, "done", kept=kept, rejected=len(decisions.rejected), details=details)
            self.store.upsert_round(self.run_id, idx + 1, phase="train")
        detail = ", ".join(f"{n} {r}" for r, n in reasons.most_common()) or "none rejected"
        self.log(f"round {idx}: kept {kept} of {len(pending)} new examples ({detail})", kind="phase")

    def _keep_limit(self, idx: int, decisions: Any) -> None:
        """loop.keep_limits: past the round's limit, kept candidates are rejected as over_budget (a seeded draw)."""
        limits = self.cfg.loop.keep_limits
        if not limits:
            return
        limit = limits[min(idx, len(limits) - 1)]
        if len(decisions.kept) <= limit:
            return
        import random

        keep = set(random.Random(self.cfg.seed + idx).sample(decisions.kept, limit))
        for example_id in decisions.kept:
            if example_id not in keep:
                decisions.rejected[example_id] = "over_budget"
        decisions.kept = [i for i in decisions.kept if i in keep]

    def _verify(self, idx: int, rows: list[StoredExample], meter: PhaseMeter, stats: dict[str, Any]) -> dict[int, str | None]:
        """Each candidate answered blind by the teacher (greedy, cached); the task turns disagreement into a reason."""
        identity = self._identity(meter)
        seeds = self.store.examples(self.run_id, split="seed") if self.cfg.checks.verify_shots else []
        shots = verify_shots(self.task, [example_from_row(r) for r in seeds], self.cfg.checks.verify_shots)
        examples = {row.id: example_from_row(row) for row in rows}
        requests: dict[str, TeacherRequest] = {}
        keys: dict[int, str] = {}
        for row_id, ex in examples.items():
            request = verify_request(self.task, self.cfg, ex, identity, shots)
            keys[row_id] = request.key
            requests.setdefault(request.key, request)
        t0 = time.perf_counter()
        hits, _ = self._call_teacher(idx, "verify", list(requests.values()), meter, "verify")
        verdicts: dict[int, str | None] = {}
        for row_id, ex in examples.items():
            call = self.store.teacher_call(keys[row_id])
            reply = call.reply if call is not None else None
            verdicts[row_id] = verify_verdict(self.task, ex, reply)
        stats.update(verify_calls=len(requests), verify_cache_hits=hits,
                     verify_seconds=round(time.perf_counter() - t0, 3))
        return verdicts

    def _phase_done(self, idx: int) -> None:  # pragma: no cover - _current_round never returns a done round
        raise AssertionError("done rounds are not run")

    # report -------------------------------------------------------------------------------------
    def _report(self) -> None:
        """Pick the best round on validation (earliest on ties) and make sure its test score exists."""
        rounds = [r for r in self.store.rounds(self.run_id) if r.val_acc is not None]
        if not rounds:
            return
        best = max(rounds, key=lambda r: (r.val_acc or 0.0, -r.idx))
        if best.test_acc is None:
            test = self._limited("test", self.cfg.eval.test_limit)
            if test:
                with PhaseMeter() as meter:
                    student = self.models.student(meter, adapter=best.adapter_path)
                    preds = self._predict(scorer_of(student), best.idx, test)
                with self.store.transaction():
                    self.store.insert_predictions([asdict(p) for p in preds])
                    self.store.upsert_round(self.run_id, best.idx, test_acc=accuracy(preds))
        self.store.update_run(self.run_id, best_round=best.idx)
        best = self.store.existing_round(self.run_id, best.idx)
        self.log(f"best round on validation: {best.idx} (validation {_pct(best.val_acc)}, test {_pct(best.test_acc)})", kind="status")


def _targets_noun(targets: str) -> str:
    return {"misses": "misses", "random": "randomly drawn seed examples", "all": "seed examples"}[targets]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
