"""The LLM2LLM loop: train → evaluate → augment → filter, one committed phase at a time, resumable."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from engine.config.schema import RunConfig
from engine.data.example_rows import example_from_row
from engine.run.augment_phase import augment
from engine.run.checkpoints import publish, save_resolved_config, staging_folder
from engine.run.context import RunContext
from engine.run.failures import RunFailed, append_traceback, failure_cause, worker_log
from engine.run.faults import fault_point, torn_adapter_save
from engine.run.filter_phase import filter_round
from engine.run.meter import PhaseMeter
from engine.run.model_slots import ModelSlots, describe_teacher, scorer_of, trainer_of
from engine.run.progress_writer import Progress
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
        self.models = ModelSlots(self.cfg, on_plan=self._record_plan, on_teacher=self._record_teacher)
        self.signals = Signals()
        self.ctx = RunContext(store, run_id, self.cfg, self.task, self.models, on_progress=on_progress, on_log=on_log,
                              safe_point=self.signals.check)
        self.log = self.ctx.log
        self.progress = self.ctx.progress
        self.tracking = RunTracking(store, run_id, self.cfg, self.log)  # off unless tracking.mlflow is set

    # plumbing ---------------------------------------------------------------------------------

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
    def _phase_train(self, idx: int) -> None:
        rows = self.ctx.training_examples(idx)
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
            self.ctx.finish_phase(idx, "train", meter, "eval", train_size=len(pairs), adapter_path=str(adapter_dir),
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
        rows = self.ctx.limited("validation", self.cfg.eval.validation_limit)
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
            splits["train"] = self.ctx.training_examples(idx)
        else:
            splits["seed"] = self.store.examples(self.run_id, split="seed")
        splits["validation"] = self.ctx.limited("validation", self.cfg.eval.validation_limit)
        if self.cfg.loop.score_test_every_round:
            splits["test"] = self.ctx.limited("test", self.cfg.eval.test_limit)
        return splits

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
            self.ctx.finish_phase(idx, "eval", meter, "done" if reason else "augment",
                               seed_acc=acc.get("seed", acc.get("train")), val_acc=acc.get("validation"),
                               test_acc=acc.get("test"), misses=len(misses),
                               details={"validation_answers": {str(k): v for k, v in answers.most_common(12)}})
        self.log(f"round {idx}: seed acc {_pct(acc.get('seed', acc.get('train')))}, validation {_pct(acc.get('validation'))}, "
                 f"test {_pct(acc.get('test'))}, {len(misses)} misses ({meter.seconds:.1f}s)", kind="phase")
        if reason:
            self.log(f"stopping after round {idx}: {reason}", kind="status")

    def _stop_reason(self, idx: int, val_acc: float | None, misses: int) -> str | None:
        history = [r.val_acc for r in self.store.rounds(self.run_id) if r.idx < idx and r.val_acc is not None]
        return stop_reason(self.cfg, idx, misses, [*history, val_acc] if val_acc is not None else [])

    def _predict(self, scorer: Any, idx: int, rows: list[StoredExample]) -> list[Prediction]:
        return predict(self.task, scorer, rows, round_idx=idx, batch_size=self.cfg.eval.batch_size,
                       max_new_tokens=self.cfg.eval.max_new_tokens, on_progress=self.progress(idx, "eval", unit="batch"))

    # augment and filter: engine/run/augment_phase.py and filter_phase.py ---------------------
    def _phase_augment(self, idx: int) -> None:
        augment(self.ctx, idx)

    def _phase_filter(self, idx: int) -> None:
        filter_round(self.ctx, idx)

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
            test = self.ctx.limited("test", self.cfg.eval.test_limit)
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


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def stop_reason(cfg: RunConfig, idx: int, misses: int, val_history: list[float]) -> str | None:
    """Why the loop ends after round `idx` (None: it goes on), from its misses and validation accuracy so far (this
    round's last; empty when it has none)."""
    if idx >= cfg.loop.rounds - 1:
        return f"reached loop.rounds = {cfg.loop.rounds}"
    if misses == 0 and cfg.loop.targets != "all":
        if idx == 0:  # trained to its best length, a small student often fits every seed (the sweeps at 8 seeds)
            return ("no misses: the student answers every seed example right and with confidence, so the loop has "
                    "nothing to write from and plain fine-tuning is the result; loop.targets = \"all\" writes for "
                    "every seed example instead")
        return "no misses left"
    patience = cfg.loop.patience
    if patience and val_history:
        earlier, now = val_history[:-1], val_history[-1]
        if len(earlier) >= patience and max(earlier[-patience:] + [now]) <= max(earlier[:-patience] or [-1.0]):
            return f"validation accuracy has not improved for {patience} rounds"
    return None
