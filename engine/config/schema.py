"""The one typed schema of a run: TOML file + `--set key=value` overrides, validated by pydantic."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import tomllib
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_core import PydanticCustomError

from engine.config.presets import apply_preset
from models.errors import ConfigError
from models.params import LoraParams, ResponseFormat, TeacherParams, TrainParams

TaskKind = Literal["math", "classification", "multiple_choice", "free_text"]


class Section(BaseModel):
    """Base of every config section: unknown keys are refused, types are strict-ish."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class TaskConfig(Section):
    """What the student must do: kind, prompt template, labels and teacher guidance."""

    preset: str | None = Field(None, description="Name of a built-in task (gsm8k, mawps, sst2, rotten_tomatoes, trec, snips, math_topic, mmlu_stem, casehold); its values fill the unset fields below.")
    kind: TaskKind | None = Field(None, description="Task kind: math, classification, multiple_choice or free_text.")
    prompt: str | None = Field(None, description="Student prompt template; {input} is the example text, {choices} the lettered options.")
    labels: list[str] | None = Field(None, description="Allowed labels (classification).")
    description: str | None = Field(None, description="One paragraph telling the teacher what the task is.")
    match: Literal["exact", "regex"] = Field("exact", description="free_text scoring: normalised exact match or regex.")
    choice_format: Literal["letter", "text"] = Field("letter", description="multiple_choice: the student answers with the option's letter, or with the option's text (scored on each option's text, cloze style).")
    answer_regex: str | None = Field(None, description="free_text with match=regex: the gold target is a regex the answer must fully match.")


class DataConfig(Section):
    """Where the examples come from and which fields hold what."""

    seed: Path | None = Field(None, description="Seed (training) examples: .jsonl, .csv or .parquet.")
    validation: Path | None = Field(None, description="Validation examples (pick the best round). Split from `pool` when absent.")
    test: Path | None = Field(None, description="Test examples (scored, never used for decisions). Split from `pool` when absent.")
    pool: Path | None = Field(None, description="A larger file to draw seed/validation/test from when they are not given.")
    unlabeled: Path | None = Field(None, description="Real inputs without labels (same formats and input field as the other files), the source of loop.source = 'pool': rows nearest each miss, labelled blind by the teacher. Rows equal to a seed, validation or test text are dropped and counted.")
    seed_size: int | None = Field(None, ge=1, description="Take this many seed examples (balanced by label for classification).")
    validation_size: int = Field(200, ge=1, description="Rows drawn for validation from the pool.")
    test_size: int = Field(500, ge=1, description="Rows drawn for test from the pool.")
    split_seed: int = Field(0, description="Seed of every random draw of rows.")
    seed_draw: int | None = Field(None, description="Seed of the seed-example draw alone (a sweep's seed sets); validation and test stay as split_seed drew them. Default: split_seed's draw.")
    input_field: str = Field("input", description="Field with the example text.")
    target_field: str = Field("target", description="Field with the gold answer (label, number, option index or text).")
    choices_field: str | None = Field(None, description="Field with the list of options (multiple_choice).")
    label_map: dict[str, str] | None = Field(None, description="Map raw target values to label names, e.g. {'0': 'negative'}.")


class StudentConfig(Section):
    """The small model being taught."""

    model: str = Field("smollm2-135m-instruct", description="Catalog name, local Hugging Face folder, or .gguf file.")
    quantization: Literal["auto", "nf4", "none"] = Field("auto", description="auto: QLoRA (NF4) with CUDA + bitsandbytes, else LoRA in fp32.")
    max_length: int = Field(512, ge=16, description="Longest prompt+response in tokens; longer examples are truncated from the left.")
    gradient_checkpointing: bool = Field(False, description="Trade compute for memory during training.")
    threads: int | None = Field(None, ge=1, description="CPU threads for training and evaluation (default: the cores other processes leave free, measured as each phase runs).")


class LoraConfig(Section):
    """LoRA adapter shape."""

    r: int = Field(16, ge=1, description="Adapter rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the adapter input.")
    target_modules: list[str] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get adapters.",
    )

    def params(self) -> LoraParams:
        """The adapter shape as the student takes it."""
        return LoraParams(r=self.r, alpha=self.alpha, dropout=self.dropout, target_modules=tuple(self.target_modules))


class TrainConfig(Section):
    """Optimiser settings of each round's fine-tuning."""

    epochs: float = Field(3.0, gt=0, description="Passes over the round's training set.")
    learning_rate: float = Field(2e-4, gt=0, description="Peak learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per optimizer step (before accumulation).")
    grad_accum: int = Field(1, ge=1, description="Micro-batches accumulated per optimizer step.")
    scheduler: Literal["cosine", "linear", "constant"] = Field("cosine", description="Learning-rate schedule.")
    warmup_ratio: float = Field(0.03, ge=0, lt=1, description="Share of steps spent warming up.")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    max_grad_norm: float = Field(1.0, gt=0, description="Gradient clipping norm.")
    steps: int | None = Field(None, ge=1, description="Optimizer steps per training; replaces epochs when set (step-matched baselines use it).")
    eval_every: int = Field(0, ge=0, description="Choose the training length on validation: score the adapter every this many optimizer steps and at the end, keep the best, stop after `patience` looks without a gain; epochs/steps become the cap (0: off, train the planned steps). A constant scheduler with no warmup makes the chosen length exactly reproducible by a step-matched run.")
    patience: int = Field(3, ge=1, description="With eval_every: looks without a gain in validation accuracy before training stops.")
    processes: int = Field(1, ge=1, le=64, description="Processes that train the student together (DDP through accelerate: one per GPU, or CPU shares with gloo); each optimizer step is the one-process step. 1: train in the run's own process.")

    def params(self) -> TrainParams:
        """The optimiser settings as the student takes them."""
        return TrainParams(**self.model_dump(exclude={"processes"}))

    def optimizer_steps(self, n_examples: int) -> int:
        """Optimizer steps a training on n_examples takes: the one formula training, the dry run and baselines share."""
        return self.params().optimizer_steps(n_examples)


class EvalConfig(Section):
    """How the student is evaluated."""

    batch_size: int = Field(16, ge=1, description="Prompts per forward pass.")
    max_new_tokens: int = Field(256, ge=1, description="Greedy decoding budget for generation tasks.")
    validation_limit: int | None = Field(None, ge=1, description="Score only the first N validation rows.")
    test_limit: int | None = Field(None, ge=1, description="Score only the first N test rows.")


# Settings that change where or how a run computes, never what it computes (a test proves each): a sweep compares
# resolved configs without them, so runs made before such a key existed, or with another value, are still twins.
EXECUTION_ONLY: tuple[tuple[str, str], ...] = (("teacher", "isolate"), ("tracking", "mlflow"))


class TeacherConfig(Section):
    """The stronger model that writes new examples."""

    backend: Literal["llama_cpp", "openai"] = Field("llama_cpp", description="llama_cpp: GGUF in-process; openai: an OpenAI-compatible server.")
    model: str = Field("qwen2.5-coder-1.5b-instruct", description="Catalog name or .gguf path (llama_cpp); model name (openai).")
    base_url: str | None = Field(None, description="Server URL for backend=openai, e.g. http://127.0.0.1:8080/v1.")
    response_format: ResponseFormat = Field("auto", description="backend=openai: how the JSON schema is sent: json_schema (OpenAI, vLLM, llama-server), json_object with a schema (llama-cpp-python's server), grammar (the in-process teacher's GBNF, which lets LaTeX follow a backslash: llama-server and llama-cpp-python's server), or auto (json_schema, then json_object once if the server refuses it).")
    timeout: float = Field(600.0, gt=0, description="backend=openai: seconds to wait for one completion.")
    n_ctx: int = Field(4096, ge=256, description="Context tokens (shared by the parallel sequences).")
    n_gpu_layers: int = Field(-1, description="Layers offloaded to the GPU (-1: all that the build supports).")
    n_threads: int | None = Field(None, ge=1, description="CPU threads (default: the cores other processes leave free, measured as the teacher runs).")
    parallel: int = Field(8, ge=1, le=64, description="Sequences decoded together in one context.")
    isolate: Literal["auto", "always", "never"] = Field("auto", description="backend=llama_cpp: run the teacher in a process of its own: always, never, or auto (when a CUDA GPU is present: llama.cpp built with CUDA crashed loading a model in a process where torch had used CUDA, offloading or not).")
    temperature: float = Field(0.7, ge=0, description="Sampling temperature.")
    top_p: float = Field(0.95, gt=0, le=1, description="Nucleus sampling.")
    max_tokens: int = Field(384, ge=16, description="Budget per generated example set.")
    retries: int = Field(2, ge=0, description="Extra attempts when a reply is unusable.")
    seed: int | None = Field(None, description="Sampling seed (default: the run seed).")
    show_student_answer: bool = Field(True, description="Show the teacher the student's wrong answer as well as the gold one (the paper's teacher never sees it).")

    def params(self) -> TeacherParams:
        """The backend settings as the teacher takes them."""
        return TeacherParams(backend=self.backend, model=self.model, base_url=self.base_url, n_ctx=self.n_ctx,
                             n_gpu_layers=self.n_gpu_layers, n_threads=self.n_threads, parallel=self.parallel,
                             retries=self.retries, seed=self.seed, response_format=self.response_format,
                             timeout=self.timeout, isolate=self.isolate)


class LoopConfig(Section):
    """The LLM2LLM loop; defaults follow the paper's code."""

    rounds: int = Field(10, ge=1, description="Rounds of train, evaluate, augment (round 0 is plain fine-tuning).")
    examples_per_miss: int = Field(1, ge=1, le=16, description="New examples the teacher writes for each miss.")
    miss_source: Literal["seed", "all"] = Field("seed", description="Evaluate misses among seed examples only (paper) or all training examples.")
    retrain_from: Literal["base", "previous"] = Field("base", description="Each round trains a fresh adapter on the base model (paper) or continues the previous one.")
    patience: int | None = Field(None, ge=1, description="Stop when validation accuracy has not improved for this many rounds.")
    confidence_threshold: float | None = Field(None, ge=0, lt=1, description="Also count correct answers whose probability is below this as misses (classification, multiple choice); unset or 0: wrong answers only.")
    targets: Literal["misses", "random", "all"] = Field("misses", description="Which seed examples the teacher writes from: the misses (LLM2LLM), as many randomly drawn seed examples as there are misses (the 'random' baseline), or every seed example (the 'one_shot' baseline).")
    teacher_examples: int | None = Field(None, ge=1, description="New examples asked for per round in all, spread evenly over the targets (a fixed teacher budget); default: examples_per_miss for each target.")
    near_duplicate: float = Field(0.9, gt=0, le=1, description="Similarity (0-1) at or above which a new example is a near-duplicate.")
    source: Literal["teacher", "eda", "oracle", "pool"] = Field("teacher", description="Where a round's new examples come from: the teacher writes them (LLM2LLM); `eda` makes word-level edits of each target (swap, delete, insert, replace from the seed vocabulary: the cheap baseline, no model); `oracle` takes real labelled rows of the data file that the run does not use, nearest each target (BM25) and of its label (the ceiling of any augmentation); `pool` takes real unlabeled rows of data.unlabeled nearest each target (BM25), labelled blind by the teacher's verification call and kept when that label is the target's.")
    pool_pick: Literal["nearest", "random"] = Field("nearest", description="loop.source = 'pool' or 'oracle': the rows nearest each target (BM25), or as many drawn at random (the self-training baseline).")
    keep_limits: list[int] | None = Field(None, description="Most new examples kept in round i (the i-th value; later rounds take the last). Matched arms (eda, oracle) take the reference arm's kept counts so they add as many examples.")
    score_test_every_round: bool = Field(False, description="Score the test split every round (reported as such); otherwise only the round validation picks is scored on test.")


class ChecksConfig(Section):
    """What every teacher-written candidate must pass before it is kept; each rejection is stored with its reason."""

    verify: bool = Field(True, description="The teacher labels each candidate blind in a separate cached call (classification, multiple choice) or solves it (math); disagreement is rejected as label_disagrees / solve_disagrees, and 'not a valid input' as not_a_task.")
    verify_shots: int = Field(0, ge=0, le=4, description="Classification: real seed examples of each label shown to the blind labeller, so it learns what the label names mean on this task (0: none). `l2l judge` measures what they change.")
    meta_text: bool = Field(True, description="Reject text about an example instead of an example (meta_text); patterns come from the task's labels and description.")
    meta_patterns: list[str] = Field(default_factory=list, description="Extra regular expressions (case-insensitive) that mark a candidate as meta_text.")
    requested_label: bool = Field(True, description="Reject a candidate whose label is not the label of the example it was written for (label_mismatch); off: counted, kept.")
    grounding: int = Field(3, ge=0, le=8, description="Real seed examples of the same label shown to the teacher for length and register (0: none).")
    length: float = Field(2.0, ge=0, description="Reject candidates shorter than the seeds' shortest / this or longer than their longest × this, in words (0: off).")
    label_balance: float = Field(0.1, ge=0, lt=1, description="Cap what a round adds per label so each label's share of the training set stays within this of its seed share (0: off).")
    siblings: bool = Field(True, description="Candidates of the same round count against each other as near-duplicates (sibling_duplicate).")
    repair_escapes: bool = Field(True, description="LaTeX fidelity: reject any control character left in a candidate (control_chars; the teacher's replies are read with LaTeX backslashes kept, so \\tan is never a tab) and, where the seeds write math between paired $, reject text whose $ do not pair (unbalanced_math).")
    questions: bool = Field(True, description="Where nearly every seed asks something (math problems), reject a candidate that asks nothing: a statement or an answer instead of a problem (not_a_question).")
    language: bool = Field(True, description="Reject a candidate confidently in another language than the seeds' majority and its parent example, or holding any letter of a non-Latin script (Greek aside) that no seed and not its parent uses (wrong_language); unsure guesses pass.")
    prompt_echo: bool = Field(True, description="Reject a candidate that repeats a run of the teacher prompt's instructions (prompt_echo).")
    restatement: float = Field(0.8, ge=0, le=1, description="Reject a teacher-written candidate whose word containment (rapidfuzz token_set_ratio of its content words: LaTeX markup and English function words dropped) against the example it was written from, or a candidate already accepted for the same example this round, is at or above this (restatement). Texts with fewer than 10 distinct content words, of unlike size (smaller word set under 60% of the larger) or with other numbers (number sets' Jaccard under 2/3) are exempt. 0: off.")


class AugmentConfig(Section):
    """Levers against a teacher that copies the example it is shown (issue 29); each off by default, which keeps
    today's prompts, schemas and teacher cache keys."""

    taboo_words: int = Field(0, ge=0, le=40, description="List up to this many content words of the example (stopwords left out, longest kept) in the teacher prompt as words the new examples must not use (0: off).")
    show_earlier: int = Field(0, ge=0, le=20, description="Show the teacher up to this many examples it wrote from the same example in earlier rounds (kept or rejected, newest first) as already written: write something different (0: off).")
    differ: bool = Field(False, description="When a call asks for several examples, tell the teacher to make them differ from one another (topic, situation, wording, structure) and require distinct items in the reply schema (uniqueItems: checked on the reply, so a reply repeating an item is retried; a server in strict json_schema mode may refuse the keyword).")
    hot_retry: float = Field(0.0, ge=0, le=1.5, description="When every candidate of a call is a copy of its example (exact or near-duplicate at loop.near_duplicate), ask once more at the teacher's temperature plus this, capped at hot_retry_max; the retry is cached under its own key (0: off).")
    hot_retry_max: float = Field(1.5, gt=0, le=2.0, description="The highest temperature a hot retry uses.")


class TrackingConfig(Section):
    """Where a run's results are also reported (the store stays the record); off by default."""

    mlflow: str | None = Field(None, description="MLflow tracking URI (file:///absolute/folder or http(s)://host:port): the run's config as params, metrics per round, the best round and its adapter as artifacts; a sweep as a parent run with a child run per cell. A server that fails turns tracking off for the rest of the run with one warning. Needs the llm2llm[mlflow] extra.")

    @field_validator("mlflow")
    @classmethod
    def _mlflow_uri(cls, value: str | None) -> str | None:
        """An absolute file:// or an http(s):// URI, and MLflow installed to report to it."""
        if value is None:
            return None
        if not (value.startswith("file:///") or value.startswith(("http://", "https://"))):
            raise PydanticCustomError("tracking_uri", "expected file:///absolute/folder or http(s)://host:port")
        if importlib.util.find_spec("mlflow") is None:
            raise PydanticCustomError("mlflow_missing", "MLflow is not installed: pip install 'llm2llm[mlflow]' "
                                                        "(or leave tracking.mlflow unset)")
        return value


class RunConfig(Section):
    """A whole run."""

    name: str = Field("run", min_length=1, description="Human name of the run.")
    seed: int = Field(0, description="Seed of training, sampling and splits unless overridden.")
    store: Path | None = Field(None, description="SQLite store file (default: the user data folder's l2l.db).")
    task: TaskConfig = Field(default_factory=TaskConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    student: StudentConfig = Field(default_factory=StudentConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    teacher: TeacherConfig = Field(default_factory=TeacherConfig)
    loop: LoopConfig = Field(default_factory=LoopConfig)
    checks: ChecksConfig = Field(default_factory=ChecksConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    def to_json(self) -> str:
        """Canonical JSON of the resolved config (stored on the run)."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)

    def digest(self) -> str:
        """Short content hash of the resolved config."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def to_toml(self) -> str:
        """The resolved config as TOML (None values left out)."""
        return tomli_w.dumps(_drop_none(self.model_dump(mode="json")))


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    return value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b=value` into a key path and a TOML-typed value (bare words are strings)."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected key=value, e.g. train.epochs=2")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def _set_path(doc: dict[str, Any], path: list[str], value: Any) -> None:
    node = doc
    for part in path[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {'.'.join(path)}: {part} is not a section")
    node[path[-1]] = value


def _format_error(err: ValidationError, source: str) -> str:
    lines = []
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "(top level)"
        msg = item["msg"]
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        elif item["type"] == "literal_error":
            msg = f"{msg}"
        got = item.get("input")
        shown = "" if item["type"] in ("extra_forbidden", "missing") or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{source}: {key}: {msg}{shown}")
    return "\n".join(lines)


def resolve(doc: dict[str, Any], source: str = "config", base_dir: Path | None = None) -> RunConfig:
    """Validate a config mapping; relative data paths are taken from `base_dir`."""
    try:
        cfg = RunConfig.model_validate(apply_preset(doc))
    except ValidationError as err:
        raise ConfigError(_format_error(err, source)) from None
    if base_dir is not None:
        for name in ("seed", "validation", "test", "pool", "unlabeled"):
            path = getattr(cfg.data, name)
            if path is not None and not path.is_absolute():
                setattr(cfg.data, name, (base_dir / path).resolve())
        if cfg.store is not None and not cfg.store.is_absolute():
            cfg.store = (base_dir / cfg.store).resolve()
        for section, field in ((cfg.student, "model"), (cfg.teacher, "model")):
            value = getattr(section, field)
            if ("/" in value or value.endswith(".gguf")) and not Path(value).is_absolute() and (base_dir / value).exists():
                setattr(section, field, str((base_dir / value).resolve()))
    return cfg


class SweepConfig(Section):
    """A sweep: every (arm, seed set) as its own run; read from the config file's [sweep] table."""

    arms: list[str] = Field(default_factory=lambda: ["plain", "one_shot", "random", "paper", "llm2llm"],
                            description="Arms to run: built-in (plain, one_shot, random, paper, llm2llm) or defined below.")
    seed_sets: int = Field(3, ge=1, le=50, description="Seed sets: different seed-example draws and training seeds; validation and test stay fixed.")
    define: dict[str, list[str]] = Field(default_factory=dict, description="Your own arms: name = [\"key=value\", ...] overrides, e.g. ablations.")
    match: str = Field("llm2llm", description="The arm whose optimizer steps `plain` matches, whose teacher budget `one_shot` spends and whose kept examples per round `eda` and `oracle` add.")
    seed_sizes: list[int] | None = Field(None, min_length=1, description="Seed sizes to run each arm at (data.seed_size for each; a larger size of a seed set holds the smaller one), for a data-efficiency curve. Default: the config's data.seed_size alone.")
    ray: str | None = Field(None, min_length=1, description="Run each unfinished cell as a Ray task on the cluster at this address: 'auto' (the cluster this machine is part of), 'ray://host:port', or 'local' (a Ray of this machine's own); `l2l sweep --ray` wins. Where cells run, not what they compute: not part of the sweep's identity.")


def load_config(path: Path | None, overrides: list[str] | None = None) -> RunConfig:
    """Read a TOML file (or start from defaults), apply `--set` overrides, validate (a [sweep] table is ignored)."""
    doc, source, base_dir = read_document(path, overrides)
    doc.pop("sweep", None)
    return resolve(doc, source, base_dir)


def read_document(path: Path | None, overrides: list[str] | None = None) -> tuple[dict[str, Any], str, Path]:
    """The config file's mapping with `--set` overrides applied, the name to cite in errors, and its folder."""
    doc: dict[str, Any] = {}
    source = "defaults"
    base_dir = Path.cwd()
    if path is not None:
        path = Path(path)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found")
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"{path}: not valid TOML: {err}") from None
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
        source = str(path)
        base_dir = path.resolve().parent
    apply_overrides(doc, overrides or [])
    return doc, source, base_dir


def apply_overrides(doc: dict[str, Any], overrides: list[str]) -> None:
    """Apply `key=value` overrides to a config mapping in place."""
    for text in overrides:
        key_path, value = parse_override(text)
        _set_path(doc, key_path, value)


def json_schema() -> dict[str, Any]:
    """JSON schema of RunConfig (drives the TUI's new-run form)."""
    return RunConfig.model_json_schema()
