"""Export a run: the final training set (raw rows, prompt/completion, chat messages, and a `datasets` folder with a
dataset card), the best round's adapter, that adapter merged into a 16-bit base (each with a model card), GGUFs (f16
and llama.cpp quantizations) and an Ollama Modelfile reproducing the training prompt; each file listed with its size
and sha256 in run-<id>-manifest.json, everything owner-only."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

import orjson

from engine.config.schema import RunConfig
from engine.data.example_rows import example_from_row
from engine.export.dataset_card import TrainingDataset, training_dataset
from engine.export.model_card import model_card, write_model_card
from engine.run.faults import fault_point
from engine.store.db import Store, private_dir
from engine.store.rows import StoredExample
from engine.tasks.base import Task
from models.errors import ConfigError, StoreError

PARTS = ("data", "adapter", "merged", "gguf", "modelfile")  # what `l2l export` writes by default
LIGHT = ("data", "adapter")  # no model loading: what the app's export writes
Say = Callable[[str], None]


def best_round(store: Store, run_id: int) -> int:
    """The round validation picked, else the last trained one."""
    best = store.run(run_id).best_round
    if best is not None:
        return int(best)
    rounds = [r for r in store.rounds(run_id) if r.adapter_path]
    if not rounds:
        raise StoreError(f"run {run_id} has no trained round yet: nothing to export")
    return rounds[-1].idx


def prompt_frame(task: Task) -> tuple[str, str] | None:
    """(text before, text after) the input in the task's prompt template, when it holds the input once; whether every
    rendered prompt really is that frame around its input is checked row by row (`_training_set_files`)."""
    template = task.prompt_template
    if template.count("{input}") != 1:
        return None
    before, after = template.split("{input}")
    return before, after


def user_text(task: Task, frame: tuple[str, str] | None, row: StoredExample | Mapping[str, Any]) -> str:
    """What a Modelfile user sends for a row: its input when the template frames it, else the rendered prompt."""
    ex = example_from_row(row)
    return ex.input if frame is not None else task.render_prompt(ex)


def _lineage(row: dict[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "split": row["split"], "parent_id": row["parent_id"], "origin_round": row["origin_round"],
            "teacher_call": row["teacher_call"], "answer": row["answer"]}


def prompt_completion_record(row: dict[str, Any], prompt: str, completion: str) -> dict[str, Any]:
    """One training row as a prompt/completion record with lineage columns."""
    return {"prompt": prompt, "completion": completion, **_lineage(row)}


def chat_record(row: dict[str, Any], prompt: str, completion: str) -> dict[str, Any]:
    """One training row as a chat-messages record with lineage columns."""
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": completion}],
            **_lineage(row)}


def private(path: Path) -> None:
    """Owner-only permissions: 0700 on folders, 0600 on files, the whole tree."""
    path = Path(path)
    if path.is_dir():
        os.chmod(path, 0o700)
        for root, dirs, files in os.walk(path):
            for d in dirs:
                os.chmod(Path(root) / d, 0o700)
            for f in files:
                os.chmod(Path(root) / f, 0o600)
    elif path.exists():
        os.chmod(path, 0o600)


@contextmanager
def _jsonl_file(path: Path) -> Iterator[Callable[[dict[str, Any]], None]]:
    """A JSONL file written through a temporary one that replaces `path` only when every record is in."""
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    # Line by line into a 1 MiB buffer: joining thousands of lines first allocated and freed megabytes per chunk,
    # and the heap growing and shrinking with them cost more page faults than the rest of the export.
    with os.fdopen(fd, "wb", buffering=1 << 20) as fh:

        def write(record: dict[str, Any]) -> None:
            fh.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))  # UTF-8 as is (ensure_ascii=False)

        yield write
    tmp.replace(path)


def export_run(store: Store, run_id: int, out_dir: Path, parts: Sequence[str] = LIGHT, *,
               quants: Sequence[str] = ("q8_0",), dtype: str = "float16", say: Say | None = None) -> dict[str, Path]:
    """Write the chosen parts into out_dir (created 0700) and the manifest; returns {label: path} of what was written."""
    unknown = set(parts) - set(PARTS)
    if unknown:
        raise ConfigError(f"export: unknown part(s) {sorted(unknown)}; choose from {', '.join(PARTS)}")
    say = say or (lambda _msg: None)
    run = store.run(run_id)
    cfg = RunConfig.model_validate(run.config)
    from engine.tasks.registry import make_task

    task = make_task(cfg.task)
    best = best_round(store, run_id)
    out_dir = Path(out_dir)
    private_dir(out_dir)
    _clear_leftovers(out_dir)
    stem = f"run-{run_id}"
    written: dict[str, Path] = {}
    data, frame, probes = _training_set_files(store, run_id, cfg, task, out_dir / stem, write="data" in parts)
    written.update(data)
    if data:
        fault_point("export", run_id, "data")
    found = store.round(run_id, best)
    adapter = Path(found.adapter_path) if found is not None and found.adapter_path else out_dir / "missing-adapter"
    if {"adapter", "merged", "gguf", "modelfile"} & set(parts) and not adapter.is_dir():
        raise StoreError(f"run {run_id} round {best}: the adapter folder {adapter} is gone; nothing to export from")
    if "adapter" in parts:
        card = model_card(store, run_id, cfg, task, best, "adapter", f"{stem}-adapter")
        written[f"adapter (round {best})"] = _copy_adapter(adapter, out_dir / f"{stem}-adapter", card)
        fault_point("export", run_id, "adapter")
    merged = out_dir / f"{stem}-merged"
    needs_merged = bool({"gguf", "modelfile"} & set(parts)) and not (merged / "config.json").is_file()
    if "merged" in parts or needs_merged:
        say(f"merging the round {best} adapter into a {dtype} copy of the base")
        written[f"merged model ({dtype})"] = _merge(cfg, adapter, merged, dtype)
        write_model_card(store, run_id, cfg, task, best, merged, "merged", dtype)
        fault_point("export", run_id, "merged")
    ggufs: dict[str, Path] = {}
    if {"gguf", "modelfile"} & set(parts):
        ggufs = _ggufs(cfg, probes, frame, merged, out_dir / stem, quants, say)
        written.update({f"GGUF {kind}": path for kind, path in ggufs.items()})
        fault_point("export", run_id, "gguf")
    if "modelfile" in parts:
        written["Ollama Modelfile"] = _modelfile(cfg, task, frame, out_dir / f"{stem}.Modelfile", ggufs)
    for path in written.values():
        private(path)
    fault_point("export", run_id, "manifest")
    write_manifest(out_dir, run_id, best, written, {"prompt_input": "input" if frame else "prompt", "dtype": dtype})
    return written


TRAINING_FILES = (("training set (rows)", "train.jsonl"),
                  ("training set (prompt/completion)", "train.prompt-completion.jsonl"),
                  ("training set (chat messages)", "train.chat.jsonl"))
DATASET = ("training set (datasets)", "dataset")  # a folder: datasets.load_from_disk, with its card


def _training_set_files(store: Store, run_id: int, cfg: RunConfig, task: Task, stem: Path, *, write: bool
                        ) -> tuple[dict[str, Path], tuple[str, str] | None, list[tuple[str, str]]]:
    """Stream the final training set once, each row rendered once: its three JSONL files and its `datasets` folder
    (when asked), its prompt frame and its first 8 rows rendered (the GGUF's probes). No row outlives its own lines
    (and the Arrow writer's batch)."""
    paths = {label: stem.with_name(f"{stem.name}-{suffix}") for label, suffix in (*TRAINING_FILES, DATASET)}
    frame = prompt_frame(task)
    probes: list[tuple[str, str]] = []
    with ExitStack() as files:
        rows_file, pc_file, chat_file = (files.enter_context(_jsonl_file(paths[label])) for label, _ in TRAINING_FILES
                                         ) if write else (_skip, _skip, _skip)
        dataset: TrainingDataset | None = files.enter_context(
            training_dataset(store, run_id, cfg, task, paths[DATASET[0]])) if write else None
        rows = files.enter_context(closing(store.training_set(run_id)))  # its snapshot ends here, error or not
        for n, row in enumerate(rows):
            ex = example_from_row(row)
            prompt, completion = task.render_prompt(ex), task.render_response(ex)
            if frame is not None and prompt != frame[0] + ex.input + frame[1]:
                frame = None  # prompts are more than a frame around the input (e.g. lettered options)
            if n < 8:
                probes.append((prompt, completion))
            rows_file(row)
            pc_file(prompt_completion_record(row, prompt, completion))
            chat_file(chat_record(row, prompt, completion))
            if dataset is not None:
                dataset.add(row, prompt, completion)
            if n == 1 and write:
                fault_point("export", 0, "writing")  # a kill mid-file leaves only the temporary files
    return (paths if write else {}), frame, probes


def _skip(_record: dict[str, Any]) -> None:
    """Where the data files are not asked for: the rows are still read for the frame and the probes."""


def _copy_adapter(adapter: Path, target: Path, card: str) -> Path:
    """The adapter folder, its config and its model card (in place of peft's template) put in place by one rename."""
    tmp = target.with_name(target.name + f".{os.getpid()}.tmp")
    shutil.copytree(adapter, tmp)
    (tmp / "README.md").write_text(card, encoding="utf-8")
    config = adapter.parent / "config.toml"
    if config.exists():
        shutil.copy2(config, tmp / "l2l-config.toml")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


def _clear_leftovers(out_dir: Path) -> None:
    """Remove the temporary files and folders an export killed mid-write left behind (parts land by rename)."""
    for path in out_dir.glob("*.tmp"):
        shutil.rmtree(path) if path.is_dir() else path.unlink()


def student_folder(cfg: RunConfig) -> Path:
    """The student's base as a Hugging Face folder (a GGUF student's cached conversion)."""
    from models.catalog import resolve_model
    from models.convert import resolve_student_folder
    from models.paths import model_cache

    return resolve_student_folder(resolve_model(cfg.student.model), model_cache())


def _merge(cfg: RunConfig, adapter: Path, out: Path, dtype: str) -> Path:
    from models.export_merge import merge_adapter

    return merge_adapter(student_folder(cfg), adapter, out, dtype=dtype,  # type: ignore[arg-type]
                         max_new_tokens=cfg.eval.max_new_tokens)


def chat_template(frame: tuple[str, str] | None) -> str:
    """A Jinja chat template giving a chat endpoint (llama-server) the training prompt: the last message, framed."""
    before, after = frame or ("", "")
    return f"{{{{ {json.dumps(before)} }}}}{{{{ messages[-1]['content'] }}}}{{{{ {json.dumps(after)} }}}}"


def _ggufs(cfg: RunConfig, rendered: Sequence[tuple[str, str]], frame: tuple[str, str] | None, merged: Path,
           stem: Path, quants: Sequence[str], say: Say) -> dict[str, Path]:
    from models.export_gguf import quantize, write_f16_gguf

    probes = [prompt + completion for prompt, completion in rendered]
    say("writing the f16 GGUF")
    f16 = write_f16_gguf(merged, stem.with_name(stem.name + "-f16.gguf"), name=f"{cfg.name} (llm2llm {stem.name})",
                         chat_template=chat_template(frame), probes=probes)
    out = {"f16": f16}
    for kind in quants:
        say(f"quantizing to {kind} with llama.cpp")
        out[kind] = quantize(f16, stem.with_name(f"{stem.name}-{kind}.gguf"), kind)
    return out


def _modelfile(cfg: RunConfig, task: Task, frame: tuple[str, str] | None, path: Path, ggufs: dict[str, Path]) -> Path:
    from models.export_modelfile import Modelfile, go_template, write_text

    source = next((p for k, p in ggufs.items() if k != "f16"), ggufs.get("f16"))
    assert source is not None
    before, after = frame or ("", "")
    mf = Modelfile(source=f"./{source.name}", template=go_template(before, after), stops=tuple(task.stop),
                   parameters={"temperature": "0", "repeat_penalty": "1", "num_predict": str(cfg.eval.max_new_tokens),
                               "num_ctx": str(cfg.student.max_length + cfg.eval.max_new_tokens)})
    said = "the example's input" if frame else "the whole task prompt"
    comments = [f"llm2llm student of run '{cfg.name}': trained on raw prompts (prompt + response + EOS, no chat template).",
                f"Send {said} as the prompt; the TEMPLATE rebuilds the training prompt, decoding is greedy as evaluated."]
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(write_text(mf, comments))
    return path


def sha256_of(path: Path) -> str:
    """sha256 of a file, read in 1 MiB blocks."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(out_dir: Path, run_id: int, round_idx: int, written: dict[str, Path], extra: dict[str, Any]) -> Path:
    """run-<id>-manifest.json: every exported file with its label, size and sha256 (merged with an earlier manifest)."""
    path = Path(out_dir) / f"run-{run_id}-manifest.json"
    old = read_manifest(out_dir, run_id)
    files = {f["path"]: f for f in old.get("files", [])}
    for label, item in written.items():
        members = sorted(p for p in item.rglob("*") if p.is_file()) if item.is_dir() else [item]
        for member in members:
            rel = str(member.relative_to(out_dir))
            files[rel] = {"label": label, "path": rel, "size": member.stat().st_size, "sha256": sha256_of(member)}
    doc = {**old, **extra, "run": run_id, "round": round_idx, "files": sorted(files.values(), key=lambda f: f["path"])}
    return _write_json(path, doc)


def read_manifest(out_dir: Path, run_id: int) -> dict[str, Any]:
    """The manifest of an export folder ({} when there is none)."""
    path = Path(out_dir) / f"run-{run_id}-manifest.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_json(path: Path, doc: dict[str, Any]) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(doc, fh, indent=1, ensure_ascii=False)
    tmp.replace(path)
    os.chmod(path, 0o600)
    return path
