"""Reporting runs to MLflow (`[tracking] mlflow = URI`): a copy of what the store holds, never its record.

A run is one MLflow run: the resolved config as params, one metric point per round for each finished phase (step = the
round index), the best round, and at the end its adapter folder (and any report PNG) as artifacts. A sweep is a parent
run whose cells are child runs (tag mlflow.parentRunId). The MLflow run id is kept in a 'tracking' event of the
llm2llm run, so a resumed run continues the same MLflow run; the last phase copied is a tag on the MLflow run, so each
phase is sent once even across kill -9. The first failure (a server that is down, a full disk) says so in one warning
line and turns tracking off for the rest of that run: short HTTP timeouts and no retries keep that first failure quick.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from engine.config.schema import RunConfig
from engine.store.db import Store
from engine.store.rows import Round
from engine.store.status import RunStatus

T = TypeVar("T")
Warn = Callable[[str], None]

EVENT_KIND = "tracking"  # events holding the MLflow run id (data: mlflow_run_id, uri) and tracking's one warning
LOGGED_TAG = "llm2llm.logged"  # the last phase copied to the MLflow run, "round:phase"
PHASES = ("train", "eval", "augment", "filter")
PARAM_VALUE_MAX = 500  # servers before MLflow 2 refuse longer values (6000 since); the whole config is an artifact too
PARAMS_PER_CALL = 100  # MLflow's batch limits
METRICS_PER_CALL = 900
HTTP_TIMEOUT_S = "5"  # per request; a closed port fails at once, a silent host after this
MLFLOW_STATUS = {RunStatus.FINISHED: "FINISHED", RunStatus.STOPPED: "KILLED", RunStatus.FAILED: "FAILED"}

# URIs that failed in this process: the later cells of a sweep skip them at once instead of failing one by one
_down: dict[str, str] = {}


def _configure(uri: str) -> None:
    """Environment MLflow reads per request: short timeouts, no retries, no telemetry, the file store allowed."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", HTTP_TIMEOUT_S)
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "0")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # local-first: nothing leaves but what the user asked
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")  # the run's stdout is its report
    if uri.startswith("file:"):  # MLflow 3 refuses its (maintained, working) file store unless asked for it
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its notices would interleave with the run's lines


def flatten_params(doc: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """A nested mapping as dotted keys with string values (JSON for lists, numbers, booleans and None), each value cut
    to PARAM_VALUE_MAX characters with a note of what was cut."""
    out: dict[str, str] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten_params(value, f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
        if len(text) > PARAM_VALUE_MAX:
            note = f"… (+{len(text) - PARAM_VALUE_MAX + 40} chars, see config.json)"
            text = text[: PARAM_VALUE_MAX - len(note)] + note
        out[name] = text
    return out


def _millis(iso: str | None) -> int:
    """An ISO timestamp of the store in milliseconds since the epoch (now when absent)."""
    if iso:
        try:
            return int(datetime.fromisoformat(iso).timestamp() * 1000)
        except ValueError:
            pass
    return int(time.time() * 1000)


def phase_metrics(round_row: Round, phase: str) -> dict[str, float]:
    """What one finished phase of a round measured, as metric name → value (a name is never the folder of another:
    the file store keeps `a/b` in a folder `a`)."""
    details = round_row.record(phase)
    fields = {"train": ("train_size", "train_loss"), "eval": ("seed_acc", "val_acc", "test_acc", "misses"),
              "augment": ("generated",), "filter": ("kept", "rejected")}[phase]
    values = {name: getattr(round_row, name) for name in fields}
    out = {name: float(value) for name, value in values.items() if value is not None}
    if phase == "train" and details.get("steps") is not None:
        out["train_steps"] = float(details["steps"])
    if phase == "filter":
        out.update({f"rejected_by/{reason}": float(n) for reason, n in (details.get("reasons") or {}).items()})
    if details.get("seconds") is not None:
        out[f"seconds/{phase}"] = float(details["seconds"])
    return out


class Tracking:
    """One MLflow client for one URI that turns itself off at its first failure, saying so once."""

    def __init__(self, uri: str | None, warn: Warn, note: Warn) -> None:
        self.uri = uri
        self.warn = warn  # the one warning line (store event and CLI)
        self.note = note  # a quiet line (store event only): off because the URI failed earlier in this process
        self.off = uri is None
        self.seconds = 0.0  # time spent in tracking calls, failures included
        self._client: Any = None

    @property
    def client(self) -> Any:
        """The MLflow client, created at first use."""
        if self._client is None:
            assert self.uri is not None
            _configure(self.uri)
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.uri)
        return self._client

    def _call(self, what: str, work: Callable[[], T]) -> T | None:
        """Do `work` unless tracking is off; its first failure turns tracking off with one warning line."""
        if self.off:
            return None
        assert self.uri is not None
        if self.uri in _down:
            self.off = True
            try:
                self.note(f"tracking off: MLflow at {self.uri} failed earlier in this process ({_down[self.uri]})")
            except Exception:  # noqa: BLE001
                pass
            return None
        t0 = time.perf_counter()
        try:
            return work()
        except Exception as err:  # noqa: BLE001 - tracking never stops the run: the store keeps everything
            self.off = True
            cause = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            _down[self.uri] = cause
            try:  # the store itself may be what failed: the warning is best effort
                self.warn(f"tracking off for the rest of this run: reporting to MLflow at {self.uri} failed ({what}): {cause}")
            except Exception:  # noqa: BLE001
                pass
            return None
        finally:
            self.seconds += time.perf_counter() - t0

    def _experiment(self, name: str) -> str:
        """The id of the experiment called `name`, created (or restored) when needed."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is None:
            try:
                return str(self.client.create_experiment(name))
            except MlflowException as err:  # another process made it first
                if err.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
                found = self.client.get_experiment_by_name(name)
                assert found is not None
        if found.lifecycle_stage == "deleted":
            self.client.restore_experiment(found.experiment_id)
        return str(found.experiment_id)

    def _log_params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(items), PARAMS_PER_CALL):
            self.client.log_batch(run_id, params=items[start:start + PARAMS_PER_CALL])

    def _exists(self, run_id: str) -> Any:
        """The MLflow run, or None when it is gone (deleted, another store)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as err:
            if err.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return None if run.info.lifecycle_stage == "deleted" else run


class RunTracking(Tracking):
    """The MLflow run of one llm2llm run: opened at its first hook, fed after each finished phase, closed at its end."""

    def __init__(self, store: Store, run_id: int, cfg: RunConfig, log: Callable[..., None] | None = None) -> None:
        """`log` is the loop's (store event and CLI line); without it, store events only."""
        self.store = store
        self.run_id = run_id
        self.cfg = cfg
        say = log or (lambda message, **kw: store.log(run_id, message, **kw))
        super().__init__(cfg.tracking.mlflow, warn=lambda m: say(m, kind=EVENT_KIND, level="warning"),
                         note=lambda m: store.log(run_id, m, kind=EVENT_KIND, level="warning"))
        self._say = say
        self.mlflow_id: str | None = None
        self.logged: tuple[int, int] = (-1, -1)  # (round, phase index) of the last phase copied

    # hooks -------------------------------------------------------------------------------------------
    def phase_done(self) -> None:
        """After a finished phase: copy every finished phase not copied yet (the one just done, or more after a crash)."""
        self._call("logging metrics", self._sync)

    def end(self) -> None:
        """At the run's end (finished, stopped or failed): the best round, artifacts, and the MLflow run's status."""
        self._call("ending the run", self._end)

    # the work ----------------------------------------------------------------------------------------
    def recorded(self) -> str | None:
        """The MLflow run id this run reports to at this URI, from the store's events (latest first)."""
        for event in self.store.events_with_data(self.run_id, EVENT_KIND):
            data = event.data
            if data.get("mlflow_run_id") and data.get("uri") == self.uri:
                return str(data["mlflow_run_id"])
        return None

    def attach(self, mlflow_id: str, parent: str | None = None) -> None:
        """Record that this run reports to MLflow run `mlflow_id` (a sweep's child, made by the sweep)."""
        where = f" (child of {parent})" if parent else ""
        self._say(f"tracking: MLflow run {mlflow_id}{where} at {self.uri}", kind=EVENT_KIND, mlflow_run_id=mlflow_id,
                  uri=self.uri, parent=parent)
        self.mlflow_id = mlflow_id

    def create(self, experiment: str, tags: dict[str, str] | None = None, parent: str | None = None) -> str:
        """A new MLflow run for this run in `experiment` (a child of `parent` when given), recorded in the store."""
        run_tags = {"llm2llm.run_id": str(self.run_id), "llm2llm.store": str(self.store.path),
                    "llm2llm.config_hash": self.cfg.digest(), **(tags or {})}
        if parent:
            run_tags["mlflow.parentRunId"] = parent
        made = self.client.create_run(self._experiment(experiment), run_name=f"{self.cfg.name} (run {self.run_id})",
                                      tags=run_tags)
        self.attach(made.info.run_id, parent)
        return str(made.info.run_id)

    def _open(self) -> str:
        """The MLflow run this process reports to: the recorded one (marked running again), else a new one."""
        if self.mlflow_id is not None:
            return self.mlflow_id
        recorded = self.recorded()
        run = self._exists(recorded) if recorded else None
        if run is None:
            self.create(self.cfg.name)
            run = self.client.get_run(self.mlflow_id)
        self.mlflow_id = run.info.run_id
        if run.info.status != "RUNNING":
            self.client.update_run(run.info.run_id, status="RUNNING")
        mark = run.data.tags.get(LOGGED_TAG)
        if mark:
            idx, phase = mark.split(":")
            self.logged = (int(idx), PHASES.index(phase))
        if not run.data.params:
            self._log_params(run.info.run_id, flatten_params(self.cfg.model_dump(mode="json")))
            self.client.log_text(run.info.run_id, json.dumps(self.cfg.model_dump(mode="json"), indent=2, sort_keys=True),
                                 "config.json")
        return str(run.info.run_id)

    def _sync(self) -> None:
        """Send each finished phase after the last one copied, then move the mark (one batch per 900 points)."""
        from mlflow.entities import Metric, RunTag

        mlflow_id = self._open()
        points: list[Any] = []
        last = self.logged
        for row in self.store.rounds(self.run_id):
            for number, phase in enumerate(PHASES):
                done = row.record(phase)
                if not done or (row.idx, number) <= self.logged:
                    continue
                stamp = _millis(done.get("ended"))
                points += [Metric(k, v, stamp, row.idx) for k, v in phase_metrics(row, phase).items()]
                last = max(last, (row.idx, number))
        if last == self.logged:
            return
        starts = range(0, max(len(points), 1), METRICS_PER_CALL)
        for start in starts:  # the mark rides with the last batch
            tags = [RunTag(LOGGED_TAG, f"{last[0]}:{PHASES[last[1]]}")] if start == starts[-1] else []
            self.client.log_batch(mlflow_id, metrics=points[start:start + METRICS_PER_CALL], tags=tags)
        self.logged = last

    def _end(self) -> None:
        run = self.store.run(self.run_id)
        status = run.status
        if status not in MLFLOW_STATUS:
            return
        self._sync()
        mlflow_id = self._open()
        best = run.best_round
        if status == RunStatus.FINISHED and best is not None:
            self._finish(mlflow_id, self.store.existing_round(self.run_id, best))
        self.client.set_terminated(mlflow_id, MLFLOW_STATUS[RunStatus(status)])

    def _finish(self, mlflow_id: str, best: Round) -> None:
        """The best round as metrics and a tag, its test score at its step, its adapter and any report PNG."""
        from mlflow.entities import Metric, RunTag

        stamp = _millis(self.store.run(self.run_id).ended)
        idx = best.idx
        values = {"best_round": float(idx)}
        scores = {"seed_acc": best.seed_acc, "val_acc": best.val_acc, "test_acc": best.test_acc}
        values.update({f"best/{k}": float(v) for k, v in scores.items() if v is not None})
        points = [Metric(k, v, stamp, idx) for k, v in values.items()]
        if not self.cfg.loop.score_test_every_round and best.test_acc is not None:  # scored at the end only
            points.append(Metric("test_acc", float(best.test_acc), stamp, idx))
        self.client.log_batch(mlflow_id, metrics=points, tags=[RunTag("llm2llm.best_round", str(idx))])
        adapter = Path(best.adapter_path) if best.adapter_path else None
        if adapter is not None and adapter.is_dir():
            self.client.log_artifacts(mlflow_id, str(adapter), f"round-{idx}-adapter")
            for png in sorted(adapter.parents[1].glob("*.png")):  # the run's folder
                self.client.log_artifact(mlflow_id, str(png))
