"""Typed rows of the store: what `Store`'s read methods return, each built from one sqlite row by `from_row`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypedDict, cast


def decode_json(value: Any, empty: Any = None) -> Any:
    """A JSON column decoded (`empty` when it is NULL)."""
    if isinstance(value, str):
        return json.loads(value)
    return empty if value is None else value


class Owned(Protocol):
    """A run or a sweep: a status and the worker process that claimed it."""

    @property
    def status(self) -> str: ...
    @property
    def host(self) -> str | None: ...
    @property
    def pid(self) -> int | None: ...
    @property
    def pid_started(self) -> float | None: ...


@dataclass(frozen=True)
class Run:
    """A row of `runs`: its config (the resolved TOML as JSON), status, worker and what it recorded when it started."""

    id: int
    name: str
    created: str
    updated: str | None
    status: str
    config: dict[str, Any]
    config_hash: str | None
    versions: dict[str, str]
    seed: int | None
    pid: int | None
    pid_started: float | None
    host: str | None
    device: dict[str, Any]
    plan: dict[str, str] | None  # how the student loads (mode, device, reason), once it first loaded
    splits: dict[str, Any]  # what the data check noted, and the run's workdir
    teacher: dict[str, Any] | None  # what the teacher backend reported when it first loaded
    error: str | None
    stop_requested: bool
    ended: str | None
    best_round: int | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Run:
        """The run of a `runs` row."""
        return cls(
            id=int(row["id"]), name=row["name"], created=row["created"], updated=row["updated"], status=row["status"],
            config=decode_json(row["config"], {}), config_hash=row["config_hash"], versions=decode_json(row["versions"], {}),
            seed=row["seed"], pid=row["pid"], pid_started=row.get("pid_started"), host=row["host"],
            device=decode_json(row["device"], {}), plan=decode_json(row["plan"]), splits=decode_json(row["splits"], {}),
            teacher=decode_json(row.get("teacher")), error=row["error"], stop_requested=bool(row["stop_requested"]),
            ended=row["ended"], best_round=row["best_round"])

    @property
    def task_name(self) -> str:
        """The task's preset, else its kind."""
        task = self.config["task"]
        return str(task.get("preset") or task.get("kind"))


@dataclass(frozen=True)
class RunListing:
    """A run with a summary of its rounds, as the run lists show it."""

    run: Run
    rounds_done: int
    best_val: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunListing:
        """A `runs` row with its rounds_done and best_val columns."""
        return cls(run=Run.from_row(row), rounds_done=int(row["rounds_done"] or 0), best_val=row["best_val"])


@dataclass(frozen=True)
class Sweep:
    """A row of `sweeps`: its document, arms, seed sets and sizes, status and worker."""

    id: int
    name: str
    created: str
    updated: str | None
    status: str
    doc: dict[str, Any]  # the sweep's TOML document
    arms: list[dict[str, Any]]  # engine.experiments.arms.Arm rows
    seed_sets: int
    seed_sizes: list[int] | None  # None: every cell at the config's own seed size
    judge: dict[str, Any] | None  # the teacher's blind accuracy on validation, measured once
    digest: str
    source: str | None
    pid: int | None
    pid_started: float | None
    host: str | None
    ended: str | None
    error: str | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Sweep:
        """The sweep of a `sweeps` row."""
        return cls(
            id=int(row["id"]), name=row["name"], created=row["created"], updated=row["updated"], status=row["status"],
            doc=decode_json(row["doc"], {}), arms=decode_json(row["arms"], []), seed_sets=int(row["seed_sets"]),
            seed_sizes=decode_json(row.get("seed_sizes")), judge=decode_json(row.get("judge")), digest=row["digest"],
            source=row["source"], pid=row["pid"], pid_started=row.get("pid_started"), host=row["host"],
            ended=row["ended"], error=row["error"])

    @property
    def arm_names(self) -> list[str]:
        """The arms' names in the sweep's order."""
        return [str(a["name"]) for a in self.arms]


@dataclass(frozen=True)
class SweepRun:
    """A cell of a sweep (arm x seed size x seed set) and the run that is it."""

    sweep_id: int
    arm: str
    seed_size: int  # 0: the config's own seed size
    seed_set: int
    run_id: int
    overrides: list[str]  # the --set overrides that made the cell's config

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> SweepRun:
        """The cell of a `sweep_runs` row."""
        return cls(sweep_id=int(row["sweep_id"]), arm=row["arm"], seed_size=int(row.get("seed_size") or 0),
                   seed_set=int(row["seed_set"]), run_id=int(row["run_id"]), overrides=decode_json(row["overrides"], []))


@dataclass(frozen=True)
class SweepCounts:
    """How many runs a sweep has created and finished."""

    created: int
    finished: int


@dataclass(frozen=True)
class CellState:
    """What the sweep screen's fingerprint takes from one cell: its run's worker and its rounds' progress."""

    arm: str
    seed_set: int
    run_id: int
    status: str
    host: str | None
    pid: int | None
    pid_started: float | None
    updated: str | None
    best_round: int | None
    rounds: str | None  # idx:phase:val_acc of every round, comma-joined

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> CellState:
        """The fingerprint row of a cell."""
        return cls(arm=row["arm"], seed_set=int(row["seed_set"]), run_id=int(row["id"]), status=row["status"],
                   host=row["host"], pid=row["pid"], pid_started=row["pid_started"], updated=row["updated"],
                   best_round=row["best_round"], rounds=row["rounds"])


@dataclass(frozen=True)
class Event:
    """A line of a run's log."""

    id: int
    run_id: int
    ts: str
    level: str
    kind: str
    message: str
    data: dict[str, Any]  # the keyword details the line was logged with (empty when none)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Event:
        """The event of an `events` row."""
        return cls(id=int(row["id"]), run_id=int(row["run_id"]), ts=row["ts"], level=row["level"], kind=row["kind"],
                   message=row["message"], data=decode_json(row["data"], {}))


@dataclass(frozen=True)
class Progress:
    """The phase in flight of a run: how far it is and since when."""

    run_id: int
    round: int
    phase: str
    done: int
    total: int
    started: float
    updated: float
    message: str

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Progress:
        """The progress of a `progress` row."""
        return cls(run_id=int(row["run_id"]), round=int(row["round"]), phase=row["phase"], done=int(row["done"]),
                   total=int(row["total"]), started=float(row["started"]), updated=float(row["updated"]),
                   message=row["message"] or "")


@dataclass(frozen=True)
class ExampleOptions:
    """The values each example filter can take in a run."""

    split: list[str]
    origin_round: list[int]
    eval_round: list[int]
    status: list[str]
    reason_counts: dict[str, int]  # reason: examples, most frequent first
    origin_counts: dict[str, int]  # who made synthetic examples: count

    @property
    def reason(self) -> list[str]:
        """The reasons, most frequent first."""
        return list(self.reason_counts)

    @property
    def origin(self) -> list[str]:
        """The origins, in ORIGIN_ORDER."""
        return list(self.origin_counts)


@dataclass(frozen=True)
class ExampleFilter:
    """What the example browser shows; None means any."""

    split: str | None = None
    origin_round: int | None = None
    eval_round: int | None = None
    result: str | None = None  # 'correct' / 'wrong' in eval_round (latest evaluated round when unset)
    status: str | None = None
    reason: str | None = None
    text: str | None = None
    origin: str | None = None  # who made a synthetic example: teacher, pool, eda or oracle (db.ORIGIN_SQL)


@dataclass(frozen=True)
class ExampleListing:
    """An example as the example browser lists it, with the student's answer in the chosen round."""

    id: int
    split: str
    origin_round: int | None
    parent_id: int | None
    status: str
    reason: str | None
    input: str
    answer: str | None
    extracted: str | None
    correct: int | None
    origin: str | None  # who made a synthetic example (None for the others)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ExampleListing:
        """The listing of a browser query's row."""
        return cls(id=int(row["id"]), split=row["split"], origin_round=row["origin_round"], parent_id=row["parent_id"],
                   status=row["status"], reason=row["reason"], input=row["input"], answer=row["answer"],
                   extracted=row["extracted"], correct=row["correct"], origin=row["origin"])


@dataclass(frozen=True)
class StoredExample:
    """A row of `examples`: one example of a run, its split, lineage and the filter's verdict."""

    id: int
    run_id: int
    split: str
    input: str
    target: str
    answer: str
    choices: list[str] | None
    origin_round: int | None
    parent_id: int | None
    teacher_call: str | None
    content_hash: str
    status: str
    reason: str | None
    meta: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> StoredExample:
        """The example of an `examples` row."""
        return cls(id=int(row["id"]), run_id=int(row["run_id"]), split=row["split"], input=row["input"],
                   target=row["target"], answer=row["answer"], choices=decode_json(row["choices"]),
                   origin_round=row["origin_round"], parent_id=row["parent_id"], teacher_call=row["teacher_call"],
                   content_hash=row["content_hash"], status=row["status"], reason=row["reason"], meta=decode_json(row["meta"]))


@dataclass(frozen=True)
class Prediction:
    """A row of `predictions`: the student's answer to one example in one round."""

    run_id: int
    round: int
    example_id: int
    split: str
    output: str
    extracted: str | None
    correct: int
    confidence: float | None  # the chosen option's probability; None when the answer was generated

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Prediction:
        """The prediction of a `predictions` row."""
        return cls(run_id=int(row["run_id"]), round=int(row["round"]), example_id=int(row["example_id"]),
                   split=row["split"], output=row["output"], extracted=row["extracted"], correct=int(row["correct"]),
                   confidence=row["confidence"])


@dataclass(frozen=True)
class TeacherCall:
    """A row of `teacher_calls`: one cached teacher reply under its request's key, and who paid for it."""

    key: str
    model: str | None  # the teacher's cache identity
    prompt: str  # the request's messages as JSON
    response: str | None
    ok: bool
    tokens_in: int | None
    tokens_out: int | None
    seconds: float | None
    error: str | None
    created: str | None
    run_id: int | None  # None: a sweep's judge call
    round: int | None
    purpose: str | None  # write, verify or judge

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> TeacherCall:
        """The call of a `teacher_calls` row."""
        return cls(key=row["key"], model=row["model"], prompt=row["prompt"], response=row["response"],
                   ok=bool(row["ok"]), tokens_in=row["tokens_in"], tokens_out=row["tokens_out"], seconds=row["seconds"],
                   error=row["error"], created=row.get("created"), run_id=row.get("run_id"), round=row.get("round"),
                   purpose=row.get("purpose"))

    @property
    def reply(self) -> str | None:
        """The reply's text when the call succeeded, else None."""
        return self.response if self.ok else None


class PhaseRecord(TypedDict, total=False):
    """What every phase records when it commits: its time and memory."""

    seconds: float
    wall_seconds: float
    compute_seconds: float
    load_seconds: float
    peak_rss_mb: float
    ended: str


class TrainRecord(PhaseRecord, total=False):
    """The train phase: steps (chosen on validation when `selection` is set), tokens, threads and the label mix."""

    steps: int  # the optimizer steps of the kept adapter: the one source of a round's step count
    steps_run: int
    selection: list[list[float]]  # [step, validation accuracy] at every look
    threads: list[int]
    tokens: int
    tokens_per_s: float
    final_loss: float
    trainable_params: int
    label_mix: dict[str, int]
    processes: int


class EvalRecord(PhaseRecord, total=False):
    """The eval phase: the answers the student gave on validation, by answer."""

    validation_answers: dict[str, int]


class AugmentRecord(PhaseRecord, total=False):
    """The augment phase: what was asked of the source (teacher, pool, eda, oracle) and what came back."""

    source: str
    requests: int
    examples_requested: int
    targets: str
    target_misses: int
    cache_hits: int
    failed_calls: int
    failed_reasons: dict[str, int]
    tokens_out: int
    tokens_per_s: float
    copy_calls: int
    copy_call_share: float
    hot_retries: int
    hot_copy_calls: int
    hot_temperature: float | None
    pool_rows: int
    pool_taken_before: int


class FilterRecord(PhaseRecord, total=False):
    """The filter phase: rejections by reason, the verification calls and the kept share."""

    reasons: dict[str, int]
    flags: dict[str, int]
    verify_calls: int
    verify_cache_hits: int
    verify_seconds: float
    label_mix_after: dict[str, int]
    kept_share: float
    kept_per_call: float | None


class Phases(TypedDict, total=False):
    """A round's phase records, keyed by phase: the `phases` JSON column, typed."""

    train: TrainRecord
    eval: EvalRecord
    augment: AugmentRecord
    filter: FilterRecord


@dataclass(frozen=True)
class Round:
    """A row of `rounds`: the phase it is in, its counts and accuracies, and a record per finished phase."""

    run_id: int
    idx: int
    phase: str
    train_size: int | None
    seed_acc: float | None
    val_acc: float | None
    test_acc: float | None
    misses: int | None
    generated: int | None
    kept: int | None
    rejected: int | None
    adapter_path: str | None
    train_loss: float | None
    phases: Phases

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Round:
        """The round of a `rounds` row."""
        return cls(run_id=int(row["run_id"]), idx=int(row["idx"]), phase=row["phase"], train_size=row["train_size"],
                   seed_acc=row["seed_acc"], val_acc=row["val_acc"], test_acc=row["test_acc"], misses=row["misses"],
                   generated=row["generated"], kept=row["kept"], rejected=row["rejected"],
                   adapter_path=row["adapter_path"], train_loss=row["train_loss"],
                   phases=cast(Phases, decode_json(row["phases"], {}) or {}))

    def record(self, phase: str) -> Mapping[str, Any]:
        """A phase's record by name (empty before it ended): for code that walks every phase."""
        records = cast(Mapping[str, Mapping[str, Any]], self.phases)
        return records.get(phase) or {}

    @property
    def train(self) -> TrainRecord:
        """The train phase's record (empty before it ended)."""
        return self.phases.get("train") or {}

    @property
    def eval(self) -> EvalRecord:
        """The eval phase's record (empty before it ended)."""
        return self.phases.get("eval") or {}

    @property
    def augment(self) -> AugmentRecord:
        """The augment phase's record (empty before it ended, and in the last round)."""
        return self.phases.get("augment") or {}

    @property
    def filter(self) -> FilterRecord:
        """The filter phase's record (empty before it ended, and in the last round)."""
        return self.phases.get("filter") or {}
