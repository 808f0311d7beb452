"""`l2l export`'s `datasets` folder and its dataset card, and the adapter's model card, against a real tiny run: every
figure on a card is checked against the store it was read from."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from engine.config.schema import RunConfig
from engine.export.run_export import LIGHT, export_run, read_manifest
from engine.store.db import Store

pytest.importorskip("llama_cpp")


@pytest.fixture(scope="module")
def exported(tiny_run_store: tuple[Path, int], tmp_path_factory: pytest.TempPathFactory) -> tuple[Store, int, Path]:
    """The tiny run's data and adapter exported, after one kept row of each origin was made sure of."""
    src, run_id = tiny_run_store
    work = tmp_path_factory.mktemp("dataset_export")
    shutil.copytree(src.parent, work / "store")
    store = Store(work / "store" / src.name)
    _one_kept_row_of_each_origin(store, run_id)
    out = work / "out"
    export_run(store, run_id, out, LIGHT)
    return store, run_id, out


def _one_kept_row_of_each_origin(store: Store, run_id: int) -> None:
    """A kept teacher row (the random teacher's text rarely passes the checks), an unlabeled-pool row, an oracle row and
    an edit, each with its lineage as the loop stores it."""
    from engine.data.example_rows import example_from_row, example_row
    from engine.tasks.base import Example

    parent = store.examples(run_id, split="seed")[0]
    written = store.examples(run_id, split="synthetic")
    with store.transaction():
        if written and not store.examples(run_id, split="synthetic", status="kept"):
            store.set_example_status(written[0].id, "kept")
        elif not written:
            store.insert_examples([example_row(run_id, "synthetic", example_from_row(parent), origin_round=0,
                                               parent_id=parent.id, teacher_call="k" * 64)])
        for origin, text, call in (("pool", "An unlabeled review, sharp and warm.", "v" * 64),
                                   ("oracle", "A labelled review from the pool, bright and kind.", None),
                                   ("eda", "A warm , funny film film.", None)):
            ex = Example(input=text, target=" positive", answer="positive", meta={"origin": origin})
            store.insert_examples([example_row(run_id, "synthetic", ex, origin_round=1, parent_id=parent.id,
                                               teacher_call=call)])


def _card(path: Path) -> tuple[dict[str, Any], str]:
    """A card's YAML header (read by huggingface_hub, as the Hub reads it) and its text."""
    from huggingface_hub import RepoCard

    card = RepoCard.load(path)
    return card.data.to_dict(), card.text


def _table(text: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table under `## heading`, header row included."""
    section = text.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|") and not set(line) <= set("|-: ")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in rows]


def test_the_dataset_folder_loads_with_datasets_and_carries_lineage(exported: tuple[Store, int, Path]) -> None:
    from datasets import load_dataset, load_from_disk

    store, run_id, out = exported
    folder = out / f"run-{run_id}-dataset"
    train = load_from_disk(str(folder))["train"]
    rows = list(store.training_set(run_id))
    assert train.num_rows == len(rows) and train["id"] == [r["id"] for r in rows]
    assert train.column_names == ["id", "origin", "round", "parent_id", "teacher_call", "input", "target", "answer",
                                  "choices", "prompt", "completion"]
    meta = {r.id: (r.meta or {}).get("origin") for r in store.examples(run_id)}
    want_origin = {None: "teacher", "pool": "pool", "oracle": "oracle", "eda": "eda"}
    for got, row in zip(train, rows, strict=True):
        assert (got["round"], got["parent_id"], got["teacher_call"], got["input"], got["answer"]) == (
            row["origin_round"], row["parent_id"], row["teacher_call"], row["input"], row["answer"])
        assert got["origin"] == ("seed" if row["split"] == "seed" else want_origin[meta[row["id"]]])
    assert Counter(train["origin"]).keys() == {"seed", "teacher", "pool", "oracle", "eda"}
    # the card's `configs` header points the Hub's loader (and a local load_dataset) at the same Arrow file
    again = load_dataset(str(folder), split="train")
    assert again["id"] == train["id"] and again["origin"] == train["origin"]
    files = {f["path"] for f in read_manifest(out, run_id)["files"] if f["label"] == "training set (datasets)"}
    assert {f"run-{run_id}-dataset/README.md", f"run-{run_id}-dataset/dataset_dict.json"} <= files


def test_the_dataset_card_header_is_the_hubs_and_leaves_the_license_to_the_user(exported: tuple[Store, int, Path]) -> None:
    store, run_id, out = exported
    header, text = _card(out / f"run-{run_id}-dataset" / "README.md")
    n = sum(1 for _ in store.training_set(run_id))
    assert header["task_categories"] == ["text-classification"] and header["size_categories"] == ["n<1K"]
    assert header["language"] == ["en"] and "license" not in header  # the fixture's reviews are English
    assert "license: not set" in text
    seeds = store.count("examples", run_id=run_id, split="seed")
    assert f"{n} rows, {seeds} seed examples" in text


def test_the_dataset_card_figures_come_from_the_store(exported: tuple[Store, int, Path]) -> None:
    store, run_id, out = exported
    cfg = RunConfig.model_validate(store.run(run_id).config)
    _, text = _card(out / f"run-{run_id}-dataset" / "README.md")
    # the task and its prompt
    assert "- kind: classification (preset rotten_tomatoes)" in text and "Review: {input}\nSentiment:" in text
    # the teacher: the tiny GGUF's sha256, as its calls' cache identities hold it
    teacher_sha = hashlib.sha256(Path(cfg.teacher.model).read_bytes()).hexdigest()
    assert f"- sha256: `{teacher_sha}`" in text and f"- model: `{cfg.teacher.model}`" in text
    # every check, with its setting
    checks = {row[0]: row[1] for row in _table(text, "Checks")[1:]}
    assert set(type(cfg.checks).model_fields) < set(checks) and checks["duplicates"] == "on (always)"
    assert checks["verify"] == ("on" if cfg.checks.verify else "off") and checks["length"] == str(cfg.checks.length)
    # kept and rejected by reason per round: the examples table grouped
    rounds = {int(row[0]): row[1:] for row in _table(text, "Rounds")[1:]}
    for idx in {r.origin_round for r in store.examples(run_id, split="synthetic")}:
        made = store.examples(run_id, split="synthetic", origin_round=idx)
        reasons = Counter(r.reason for r in made if r.status == "rejected")
        assert rounds[idx][:3] == [str(len(made)), str(sum(r.status == "kept" for r in made)), str(reasons.total())]
        for reason, count in reasons.items():
            assert f"{reason} {count}" in rounds[idx][3]
    # the label mix of the training set, by origin
    mix = _table(text, "Label mix")
    rows = list(store.training_set(run_id))
    for line in mix[1:]:
        assert int(line[-2]) == sum(r["answer"] == line[0] for r in rows)
    # three example rows of each origin (fewer where the set holds fewer)
    for origin, want in (("seed", 3), ("teacher", 1), ("pool", 1), ("oracle", 1), ("eda", 1)):
        section = text.split(f"### {origin}\n", 1)[1].split("\n### ", 1)[0].split("\n## ", 1)[0]
        shown = [json.loads(block) for block in re.findall(r"```json\n(.*?)\n```", section, re.S)]
        assert len(shown) == want and all(r["origin"] == origin for r in shown)


def test_the_model_card_in_the_adapter_folder(exported: tuple[Store, int, Path]) -> None:
    store, run_id, out = exported
    run = store.run(run_id)
    cfg = RunConfig.model_validate(run.config)
    header, text = _card(out / f"run-{run_id}-adapter" / "README.md")
    assert header["library_name"] == "peft" and "license" not in header
    best = run.best_round
    assert f"validation chose round {best}" in text.lower()
    assert f"- name: `{cfg.student.model}`" in text and "- sha256: unknown: a local model path" in text
    assert f"`{run.plan['mode']}` on {run.plan['device']}" in text and "LoRA" in text
    table = {row[0].rstrip("*"): row for row in _table(text, "Metrics per round")[1:]}
    for r in store.rounds(run_id):
        if r.train_size is None:
            continue
        row = table[str(r.idx)]
        assert row[1] == str(r.train_size) and row[3] == f"{100 * r.val_acc:.1f}"
        assert row[4] == (f"{100 * r.test_acc:.1f}" if r.test_acc is not None else "–")
        made = store.examples(run_id, split="synthetic", origin_round=r.idx)
        assert row[6] == (str(sum(e.status == "kept" for e in made)) if made else "–")
    assert table[str(best)][0] == f"{best}*"
    best_row = store.round(run_id, best)
    assert best_row is not None
    assert f"Validation chose round {best}: validation {100 * best_row.val_acc:.1f}%" in text
    assert f"round {best} trained on {best_row.train_size} examples" in text


def _bare_run(tmp_path: Path, teacher: dict[str, Any], identity: str | None, student: str | None = None) -> tuple[Store, int]:
    """A finished math run with one seed and one kept teacher row, whose teacher call was stored under `identity`."""
    from engine.config.schema import resolve
    from engine.data.example_rows import example_row
    from engine.tasks.base import Example

    store = Store(tmp_path / "l2l.db")
    cfg = resolve({"name": "bare", "task": {"preset": "gsm8k"}, "teacher": teacher,
                   "data": {"seed": str(Path(__file__).parent / "fixtures" / "gsm8k_10.jsonl")},
                   **({"student": {"model": student}} if student else {})})
    with store.transaction():
        run_id = store.create_run("bare", cfg.to_json(), cfg.digest(), 0, {}, {}, {})
        [seed] = store.insert_examples([example_row(run_id, "seed", Example(input="1+1?", target=" 2\n#### 2", answer="2"))])
        store.insert_examples([example_row(run_id, "synthetic", Example(input="2+2?", target=" 4\n#### 4", answer="4"),
                                           origin_round=0, parent_id=seed, teacher_call="c" * 64)])
        if identity is not None:
            store.save_teacher_call({"key": "c" * 64, "model": identity, "prompt": "[]", "response": "{}", "ok": 1,
                                     "run_id": run_id, "round": 0, "purpose": "write"})
        store.upsert_round(run_id, 0, phase="done")
        store.update_run(run_id, status="finished", best_round=0)
    return store, run_id


@pytest.mark.parametrize(("teacher", "identity", "said"), [
    ({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "served"}, "openai:http://127.0.0.1:9/v1:served",
     "unknown: an OpenAI-compatible server answered"),
    ({}, None, "unknown: the store holds no teacher call of this run"),
])
def test_a_teacher_hash_the_store_does_not_hold_is_called_unknown(teacher: dict[str, Any], identity: str | None, said: str,
                                                                  tmp_path: Path) -> None:
    store, run_id = _bare_run(tmp_path, teacher, identity)
    export_run(store, run_id, tmp_path / "out", ("data",))
    header, text = _card(tmp_path / "out" / f"run-{run_id}-dataset" / "README.md")
    assert f"- sha256: {said}" in text and not re.search(r"[0-9a-f]{64}`", text.split("## Teacher", 1)[1].split("##")[0])
    assert header["task_categories"] == ["text-generation", "question-answering"] and "Label mix\n\nNot counted" in text


def test_a_catalog_students_card_gives_the_sha256_its_download_was_checked_against(tmp_path: Path) -> None:
    from engine.export.model_card import model_card
    from engine.tasks.registry import make_task
    from models.catalog import entry

    store, run_id = _bare_run(tmp_path, {}, None, student="smollm2-135m-instruct")
    cfg = RunConfig.model_validate(store.run(run_id).config)
    text = model_card(store, run_id, cfg, make_task(cfg.task), 0, "merged", f"run-{run_id}-merged")
    assert f"- sha256: `{entry('smollm2-135m-instruct').sha256}` (the catalog's sha256" in text
    assert "- mode: unknown: the run recorded no training plan" in text  # never guessed
    assert "Validation chose round 0: validation not scored, test not scored." in text
