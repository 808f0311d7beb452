"""The run config: unknown keys, type errors, --set overrides, presets, TOML round trip."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from engine.config.presets import PRESETS
from engine.config.schema import RunConfig, load_config, parse_override, resolve
from models.errors import ConfigError


def test_defaults_construct_without_a_task() -> None:
    cfg = RunConfig()
    assert cfg.task.kind is None and cfg.task.preset is None and cfg.loop.rounds == 10


def test_unknown_key_is_named_with_its_dotted_path() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"train": {"epoch": 2}}, source="run.toml")
    assert "run.toml: train.epoch: unknown key" in str(err.value)
    with pytest.raises(ConfigError, match="colour: unknown key"):
        resolve({"colour": "blue"})


def test_wrong_type_names_key_and_value() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"train": {"epochs": "many"}})
    assert "train.epochs" in str(err.value) and "'many'" in str(err.value)
    with pytest.raises(ConfigError, match=r"loop.rounds: .*\(got 0\)"):
        resolve({"loop": {"rounds": 0}})
    with pytest.raises(ConfigError, match="task.kind"):
        resolve({"task": {"kind": "regression"}})


@pytest.mark.parametrize("text, path, value", [
    ("train.epochs=2", ["train", "epochs"], 2),
    ("train.learning_rate=3e-4", ["train", "learning_rate"], 3e-4),
    ("loop.score_test_every_round=false", ["loop", "score_test_every_round"], False),
    ("name=my-run", ["name"], "my-run"),
    ('name="quoted run"', ["name"], "quoted run"),
    ('task.labels=["no", "yes"]', ["task", "labels"], ["no", "yes"]),
    ("student.model=/models/a b.gguf", ["student", "model"], "/models/a b.gguf"),
])
def test_override_parsing(text: str, path: list[str], value: object) -> None:
    assert parse_override(text) == (path, value)


def test_override_without_equals_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_override("train.epochs")


def test_overrides_apply_over_a_file(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text('name = "file"\n[train]\nepochs = 5\n[task]\npreset = "gsm8k"\n', encoding="utf-8")
    cfg = load_config(path, ["train.epochs=1", "loop.examples_per_miss=3", "data.pool=rows.jsonl"])
    assert cfg.name == "file" and cfg.train.epochs == 1 and cfg.loop.examples_per_miss == 3
    assert cfg.data.pool == (tmp_path / "rows.jsonl").resolve(), "relative data paths are taken from the config's folder"
    with pytest.raises(ConfigError, match="train.epochz: unknown key"):
        load_config(path, ["train.epochz=1"])


def test_presets_fill_unset_fields_only() -> None:
    cfg = resolve({"task": {"preset": "sst2", "prompt": "Sentence: {input}\nMood:"}, "data": {"input_field": "sentence"}})
    assert cfg.task.kind == "classification" and cfg.task.labels == ["negative", "positive"]
    assert cfg.task.prompt == "Sentence: {input}\nMood:", "a set field is kept"
    assert cfg.data.input_field == "sentence" and cfg.data.target_field == "label"
    assert cfg.data.label_map == {"0": "negative", "1": "positive"}
    # a field set to its default value counts as set
    explicit = resolve({"task": {"preset": "gsm8k"}, "data": {"input_field": "input"}})
    assert explicit.data.input_field == "input" and explicit.data.target_field == "answer"


def test_every_preset_resolves() -> None:
    for name, values in PRESETS.items():
        cfg = resolve({"task": {"preset": name}})
        assert cfg.task.kind == values["task"]["kind"] and cfg.task.prompt, name
    trec = resolve({"task": {"preset": "trec"}})
    assert trec.data.label_map is not None and trec.data.label_map["DESC"] == "description" and trec.data.label_map["1"] == "entity"
    assert resolve({"task": {"preset": "casehold"}}).data.choices_field == "holding_0,holding_1,holding_2,holding_3,holding_4"


def test_presets_do_not_share_mutable_values() -> None:
    a, b = resolve({"task": {"preset": "sst2"}}), resolve({"task": {"preset": "sst2"}})
    assert a.task.labels is not b.task.labels and a.task.labels is not PRESETS["sst2"]["task"]["labels"]


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as err:
        resolve({"task": {"preset": "imdb"}})
    assert "task.preset: unknown preset 'imdb'" in str(err.value)
    assert "gsm8k" in str(err.value) and "casehold" in str(err.value)


def test_resolved_toml_round_trips(tmp_path: Path) -> None:
    cfg = resolve({"name": "rt", "task": {"preset": "rotten_tomatoes"},
                   "data": {"pool": str(tmp_path / "pool.jsonl"), "seed_size": 32},
                   "loop": {"examples_per_miss": 4, "patience": 2}, "train": {"epochs": 1.5}})
    text = cfg.to_toml()
    assert tomllib.loads(text)["task"]["kind"] == "classification", "the TOML holds the resolved preset values"
    path = tmp_path / "resolved.toml"
    path.write_text(text, encoding="utf-8")
    again = load_config(path)
    assert again == cfg and again.digest() == cfg.digest()


def test_assignment_keeps_the_preset_values() -> None:
    cfg = resolve({"task": {"preset": "mawps"}})
    cfg.store = Path("/tmp/x.db")  # re-runs the model validator: applying the preset again changes nothing
    assert cfg.task.kind == "math" and cfg.data.input_field == "input"
