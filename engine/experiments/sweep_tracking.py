"""A sweep's parent MLflow run (`[tracking] mlflow = URI`), whose cells' runs are its children."""

from __future__ import annotations

import json
from pathlib import Path

from engine.config.schema import RunConfig
from engine.run.tracking import EVENT_KIND, MLFLOW_STATUS, RunTracking, Tracking, Warn, flatten_params
from engine.store.db import Store
from engine.store.rows import Sweep
from engine.store.status import RunStatus


class SweepTracking(Tracking):
    """The parent MLflow run of a sweep; each cell's run becomes its child."""

    def __init__(self, store: Store, sweep: Sweep, on_line: Warn) -> None:
        uri = ((sweep.doc or {}).get("tracking") or {}).get("mlflow")
        super().__init__(uri, warn=on_line, note=lambda m: None)
        self.store = store
        self.sweep = sweep
        self.mlflow_id: str | None = None

    # hooks -------------------------------------------------------------------------------------------
    def cell(self, run_id: int, arm: str, seed_set: int, seed_size: int = 0) -> None:
        """Before a cell's run (or for a cell already finished): make its run a child of the sweep's parent run."""
        self._call("adding a sweep cell", lambda: self._cell(run_id, arm, seed_set, seed_size))

    def end(self, status: str) -> None:
        """At the sweep's end: the report files when it finished, and the parent's status."""
        self._call("ending the sweep", lambda: self._end(status))

    # the work ----------------------------------------------------------------------------------------
    def _parent(self) -> str:
        """The sweep's parent MLflow run: the one its cells already name (a resumed sweep), else a new one."""
        if self.mlflow_id is not None:
            return self.mlflow_id
        for row in self.store.sweep_runs(self.sweep.id):
            for event in self.store.events_with_data(row.run_id, EVENT_KIND):
                data = event.data
                if data.get("uri") == self.uri and data.get("parent") and self._exists(data["parent"]) is not None:
                    self.mlflow_id = str(data["parent"])
                    self.client.update_run(self.mlflow_id, status="RUNNING")
                    return self.mlflow_id
        name = self.sweep.name
        made = self.client.create_run(self._experiment(name), run_name=f"sweep {self.sweep.id} · {name}",
                                      tags={"llm2llm.sweep_id": str(self.sweep.id),
                                            "llm2llm.store": str(self.store.path),
                                            "llm2llm.arms": ",".join(a["name"] for a in self.sweep.arms)})
        self.mlflow_id = str(made.info.run_id)
        params = flatten_params({k: v for k, v in self.sweep.doc.items()})
        params.update({"sweep.arms": ",".join(a["name"] for a in self.sweep.arms),
                       "sweep.seed_sets": str(self.sweep.seed_sets),
                       "sweep.seed_sizes": json.dumps(self.sweep.seed_sizes or [])})
        self._log_params(self.mlflow_id, params)
        return self.mlflow_id

    def _cell(self, run_id: int, arm: str, seed_set: int, seed_size: int) -> None:
        parent = self._parent()
        cfg = RunConfig.model_validate(self.store.run(run_id).config)
        child = RunTracking(self.store, run_id, cfg)
        recorded = child.recorded()
        existing = self._exists(recorded) if recorded else None
        if existing is not None and existing.data.tags.get("mlflow.parentRunId") == parent:
            return
        tags = {"llm2llm.arm": arm, "llm2llm.seed_set": str(seed_set), "llm2llm.seed_size": str(seed_size)}
        child._client = self.client
        child.create(self.sweep.name, tags, parent)
        if self.store.run(run_id).status == RunStatus.FINISHED:  # shared or finished before: copied whole now
            child._end()

    def _end(self, status: str) -> None:
        parent = self._parent()
        if status == RunStatus.FINISHED:
            from engine.reports.sweep_report import arm_rows, gather, report_folder, write_files

            report = gather(self.store, self.sweep.id)
            rows = [row for size in report.sizes for row in arm_rows(report, size=size)]
            for path in write_files(report, rows, report_folder(self.store, self.sweep.id)).values():
                if Path(path).is_file():
                    self.client.log_artifact(parent, str(path), "report")
        self.client.set_terminated(parent, MLFLOW_STATUS.get(RunStatus(status), "FINISHED"))
