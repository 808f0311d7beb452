"""The exported training set as a `datasets` folder (run-<id>-dataset/, `datasets.load_from_disk`, split train) with a
dataset card (README.md) in the Hub's format whose every figure is read from the store. The rows go, as they stream by,
to a child that saves them with `datasets` (engine/export/dataset_save.py says why it is a child)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from engine.config.schema import RunConfig
from engine.export.dataset_save import COLUMNS, END
from engine.export.run_facts import (
    ORIGINS,
    origin_of,
    other_origins,
    round_counts,
    size_category,
    task_categories,
    teacher_facts,
)
from engine.store.db import Store
from engine.tasks.base import Task
from models.errors import L2LError

SHOWN = 3  # example rows of each origin on the card
LABELLED = ("classification", "multiple_choice")  # kinds whose answers are a small label set: the card counts them
# guess_language's names of non-Latin scripts that name one language, as ISO 639-1 codes (the Hub's `language`)
_SCRIPT_LANGUAGE = {"chinese": "zh", "japanese": "ja", "korean": "ko", "hindi": "hi", "thai": "th", "greek": "el",
                    "hebrew": "he", "arabic": "ar", "armenian": "hy", "georgian": "ka", "bengali": "bn", "tamil": "ta"}


class TrainingDataset:
    """The training set's rows sent to the saving child as they stream by, and what the card counts of them; `finish`
    has the child save the folder, then writes the card and puts the folder in place by a rename."""

    def __init__(self, store: Store, run_id: int, cfg: RunConfig, task: Task, target: Path) -> None:
        self.store, self.run_id, self.cfg, self.task, self.target = store, run_id, cfg, task, Path(target)
        self.others = other_origins(store, run_id)
        self.tmp = self.target.with_name(f"{self.target.name}.{os.getpid()}.tmp")
        self.log = self.target.with_name(f"{self.target.name}.{os.getpid()}.log.tmp")
        if self.tmp.exists():
            shutil.rmtree(self.tmp)
        with open(self.log, "wb") as log:  # a file, not a pipe: a chatty child cannot fill it and stall the stream
            self.child = subprocess.Popen([sys.executable, "-m", "engine.export.dataset_save", str(self.tmp)], stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=log)
        self.origins: Counter[str] = Counter()
        self.labels: Counter[tuple[str, str]] = Counter()
        self.languages: Counter[str | None] = Counter()
        self.shown: dict[str, list[dict[str, Any]]] = {}

    def add(self, row: dict[str, Any], prompt: str, completion: str) -> None:
        """Send one training row (as the store streams it) with its rendered prompt and completion."""
        from engine.filter.checks import guess_language

        origin = origin_of(row, self.others)
        record = {"id": row["id"], "origin": origin, "round": row["origin_round"], "parent_id": row["parent_id"],
                  "teacher_call": row["teacher_call"], "input": row["input"], "target": row["target"],
                  "answer": row["answer"], "choices": row.get("choices"), "prompt": prompt, "completion": completion}
        self._send(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
        self.origins[origin] += 1
        if self.task.kind in LABELLED:
            self.labels[(origin, str(row["answer"]))] += 1
        if origin == "seed":
            self.languages[guess_language(row["input"])] += 1
        shown = self.shown.setdefault(origin, [])
        if len(shown) < SHOWN:
            shown.append(record)

    def _send(self, line: bytes) -> None:
        assert self.child.stdin is not None
        try:
            self.child.stdin.write(line)
        except BrokenPipeError:
            self.child.wait()
            raise self._failed() from None

    def _failed(self) -> L2LError:
        tail = "\n".join(self.log.read_text(errors="replace").strip().splitlines()[-8:])
        return L2LError(f"saving the datasets folder {self.target.name} failed (exit {self.child.returncode}):\n{tail}")

    def close(self) -> None:
        """End the stream unfinished: the child saves nothing and exits (the log stays, a *.tmp the next export clears)."""
        if self.child.stdin is not None and not self.child.stdin.closed:
            try:
                self.child.stdin.close()
            except BrokenPipeError:
                pass
        try:
            self.child.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.child.kill()
            self.child.wait()

    def finish(self) -> Path:
        """The `datasets` folder (split train, saved by `save_to_disk`) with README.md, put in place by a rename."""
        self._send(END)
        self.close()
        if self.child.returncode != 0:
            raise self._failed()
        self.log.unlink()
        (self.tmp / "README.md").write_text(self.card(), encoding="utf-8")
        if self.target.exists():
            shutil.rmtree(self.target)
        self.tmp.rename(self.target)
        return self.target

    def language(self) -> str | None:
        """The seeds' language as an ISO 639-1 code, when at least half of them read clearly as it."""
        if not self.languages:
            return None
        best, n = max(((lang, n) for lang, n in self.languages.items() if lang is not None), key=lambda item: item[1],
                      default=(None, 0))
        code = _SCRIPT_LANGUAGE.get(best, best) if best is not None else None
        return code if code is not None and len(code) == 2 and 2 * n >= sum(self.languages.values()) else None

    def card(self) -> str:
        """README.md: the Hub's YAML header, then the task, origins, teacher, checks, rounds, label mix and examples."""
        from huggingface_hub import DatasetCardData

        rows = sum(self.origins.values())
        language = self.language()
        header = DatasetCardData(
            language=[language] if language else None, pretty_name=f"llm2llm run {self.run_id}: {self.cfg.name}",
            task_categories=task_categories(self.task.kind), size_categories=[size_category(rows)],
            tags=["llm2llm", "synthetic"] if set(self.origins) - {"seed"} else ["llm2llm"],
            configs=[{"config_name": "default", "data_files": [{"split": "train", "path": "train/data-*.arrow"}]}])
        parts = [f"---\n{header.to_yaml()}\n---", self._intro(rows, language), self._task(), self._origins(),
                 self._teacher(), self._checks(), self._rounds(), self._label_mix(), self._examples(), self._columns()]
        return "\n\n".join(p for p in parts if p) + "\n"

    def _intro(self, rows: int, language: str | None) -> str:
        later = ", ".join(f"{n} {origin}" for origin, n in sorted(self.origins.items()) if origin != "seed") or "none"
        seeds = self.languages.total()
        said = (f"{language} (guessed from the seed texts: {self.languages[_guessed(language)]} of {seeds} read as it)"
                if language else f"not known (no language is clear in at least half of the {seeds} seed texts)")
        return (f"# Training set of llm2llm run {self.run_id}: {self.cfg.name}\n\n"
                f"The final training set of llm2llm run {self.run_id}: {rows} rows, {self.origins['seed']} seed examples "
                f"and the new examples the run kept (by origin: {later}). Every figure on this card is read from the "
                f"run's store ({self.store.path.name}).\n\n"
                f"- language: {said}\n"
                "- license: not set. Choose one that the seed data's licence and the teacher model's terms allow before "
                "publishing, and add it to the header.\n\n"
                "```python\nfrom datasets import load_from_disk\n\n"
                f"train = load_from_disk(\"{self.target.name}\")[\"train\"]\n```")

    def _task(self) -> str:
        t = self.cfg.task
        lines = ["## Task", "", f"- kind: {self.task.kind}" + (f" (preset {t.preset})" if t.preset else "")]
        if t.labels:
            lines.append(f"- labels: {', '.join(t.labels)}")
        if t.description:
            lines.append(f"- description: {t.description}")
        lines += ["", "The student's prompt (`{input}` is a row's input; the row's completion follows it):", "",
                  _fence(self.task.prompt_template, "text")]
        return "\n".join(lines)

    def _origins(self) -> str:
        lines = ["## Origins", "", "| origin | rows | what it is |", "|---|---:|---|"]
        for origin, meaning in ORIGINS.items():
            lines.append(f"| {origin} | {self.origins[origin]} | {meaning} |")
        for origin in sorted(set(self.origins) - set(ORIGINS)):
            lines.append(f"| {origin} | {self.origins[origin]} | as the store names it |")
        return "\n".join(lines)

    def _teacher(self) -> str:
        facts = teacher_facts(self.store, self.run_id, self.cfg)
        t = self.cfg.teacher
        sha = (", ".join(f"`{d}`" for d in facts.sha256) + f" (from the cache identities of the {facts.calls} teacher "
               "calls behind this run's rows and checks)") if facts.sha256 else f"unknown: {facts.unknown_why}"
        lines = ["## Teacher", "", f"- model: `{facts.name}` (backend {facts.backend})"]
        if facts.loaded and facts.loaded != facts.name:
            lines.append(f"- loaded: `{facts.loaded}`")
        lines += [f"- sha256: {sha}",
                  f"- sampling: temperature {t.temperature}, top_p {t.top_p}, at most {t.max_tokens} tokens, "
                  f"{t.retries} {'retry' if t.retries == 1 else 'retries'} of an unusable reply",
                  f"- new examples came from: loop.source = {self.cfg.loop.source}, loop.targets = {self.cfg.loop.targets}, "
                  f"{self.cfg.loop.examples_per_miss} per target"]
        return "\n".join(lines)

    def _checks(self) -> str:
        checks = self.cfg.checks
        lines = ["## Checks", "", "Each new example passed these before it was kept; what each rejected is counted under "
                 "Rounds.", "", "| check | setting | what it does |", "|---|---|---|",
                 f"| duplicates | on (always) | exact copies, and near copies at similarity ≥ {self.cfg.loop.near_duplicate}, "
                 "of any seed, kept, validation or test row are rejected |"]
        for name, spec in type(checks).model_fields.items():
            value = getattr(checks, name)
            setting = _setting(value)
            if name == "verify" and value and not self.task.verifies:
                setting = f"on (a {self.task.kind} task has no blind check: nothing was verified)"
            lines.append(f"| {name} | {setting} | {_first_sentence(spec.description or '')} |")
        return "\n".join(lines)

    def _rounds(self) -> str:
        counts = round_counts(self.store, self.run_id)
        lines = ["## Rounds", "", "New examples by the round that made them, as the store decided them.", "",
                 "| round | made | kept | rejected | rejected by reason |", "|---:|---:|---:|---:|---|"]
        for idx, c in sorted(counts.items()):
            reasons = ", ".join(f"{reason} {n}" for reason, n in c.rejected.most_common()) or "–"
            if c.pending:
                reasons += f" ({c.pending} not decided: the round stopped before its filter)"
            lines.append(f"| {idx} | {c.made} | {c.kept} | {c.rejected.total()} | {reasons} |")
        if not counts:
            lines.append("| – | 0 | 0 | 0 | no round made new examples |")
        return "\n".join(lines)

    def _label_mix(self) -> str:
        if self.task.kind not in LABELLED:
            return f"## Label mix\n\nNot counted: a {self.task.kind} task's answers are not a label set."
        origins = [o for o in (*ORIGINS, *sorted(set(self.origins) - set(ORIGINS))) if self.origins[o]]
        labels = sorted({label for _, label in self.labels})
        total = sum(self.labels.values())
        lines = ["## Label mix", "", "| label | " + " | ".join(origins) + " | all | share |",
                 "|---|" + "---:|" * (len(origins) + 2)]
        for label in labels:
            n = sum(self.labels[(o, label)] for o in origins)
            lines.append(f"| {label} | " + " | ".join(str(self.labels[(o, label)]) for o in origins)
                         + f" | {n} | {100 * n / total:.1f}% |")
        return "\n".join(lines)

    def _examples(self) -> str:
        lines = ["## Example rows", "", f"The first {SHOWN} rows of each origin, as the dataset holds them."]
        for origin, records in self.shown.items():
            lines += ["", f"### {origin}"]
            lines += ["", *(_fence(json.dumps(r, ensure_ascii=False, indent=1), "json") for r in records)]
        return "\n".join(lines)

    def _columns(self) -> str:
        lines = ["## Columns", "", "| column | type | meaning |", "|---|---|---|"]
        lines += [f"| {name} | {kind} | {meaning} |" for name, (kind, meaning) in COLUMNS.items()]
        return "\n".join(lines)


@contextmanager
def training_dataset(store: Store, run_id: int, cfg: RunConfig, task: Task, target: Path) -> Iterator[TrainingDataset]:
    """A TrainingDataset finished when the block ends without an error (else its temporary files stay, to be cleared)."""
    dataset = TrainingDataset(store, run_id, cfg, task, target)
    try:
        yield dataset
    except BaseException:
        dataset.close()
        raise
    dataset.finish()


def _guessed(code: str) -> str:
    """guess_language's name of an ISO code (the same code for Latin-script languages)."""
    return next((name for name, iso in _SCRIPT_LANGUAGE.items() if iso == code), code)


def _setting(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(f"`{v}`" for v in value) or "none"
    if isinstance(value, int | float) and value == 0:
        return "off (0)"
    return str(value)


def _first_sentence(text: str) -> str:
    head = text.split(". ", 1)[0].rstrip(".")
    return (head + ".").replace("|", "\\|")


def _fence(text: str, lang: str) -> str:
    """A fenced code block longer than any backtick run inside the text, so none of them closes it."""
    fence = "`" * max(3, 1 + max((len(run) for run in re.findall(r"`+", text)), default=0))
    return f"{fence}{lang}\n{text}\n{fence}"

