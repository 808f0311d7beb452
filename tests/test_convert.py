"""GGUF → Hugging Face folder conversion on the tiny random GGUF: exact logits, one conversion, clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import models.convert as convert
from models.catalog import sha256_file
from models.convert import resolve_student_folder
from models.device import plan_training
from models.errors import ModelNotFoundError
from models.params import LoraParams, TrainParams
from models.student import Student
from models.student_score import StudentScorer
from models.student_train import StudentTrainer


@pytest.fixture(scope="module")
def converted(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, list[str]]:
    """(cache dir, converted folder, progress messages) of one conversion."""
    cache = tmp_path_factory.mktemp("model_cache")
    said: list[str] = []
    folder = resolve_student_folder(tiny_gguf, cache, on_progress=said.append)
    return cache, folder, said


def test_converted_folder_gives_the_gguf_models_logits(tiny_gguf: Path, converted: tuple[Path, Path, list[str]]) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cache, folder, said = converted
    sha = sha256_file(tiny_gguf)
    assert folder == cache / "hf" / sha[:16]
    assert json.loads((folder / "source.json").read_text())["sha256"] == sha
    assert any("loading" in m for m in said) and not any(p.name.startswith(".tmp") for p in folder.parent.iterdir())
    assert "quantization_config" not in json.loads((folder / "config.json").read_text())

    reference = AutoModelForCausalLM.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name, dtype=torch.float32)
    ref_tok = AutoTokenizer.from_pretrained(str(tiny_gguf.parent), gguf_file=tiny_gguf.name)
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    text = "Review: a fine film\nSentiment: positive"
    assert tok(text)["input_ids"] == ref_tok(text)["input_ids"]
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.inference_mode():
        assert torch.equal(model(input_ids=ids).logits, reference(input_ids=ids).logits)


def test_second_call_is_a_cache_hit_without_loading(
    tiny_gguf: Path, converted: tuple[Path, Path, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    cache, folder, _ = converted

    def must_not_convert(*args: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(convert, "_convert_into", must_not_convert)
    said: list[str] = []
    assert resolve_student_folder(str(tiny_gguf), cache, on_progress=said.append) == folder
    assert any("cache hit" in m for m in said)


def test_hf_folder_is_returned_as_is(converted: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    _, folder, _ = converted
    assert resolve_student_folder(folder, tmp_path) == folder
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("make", ["missing", "empty_dir", "other_file"])
def test_unusable_paths_name_the_path(make: str, tmp_path: Path) -> None:
    path = tmp_path / "model"
    if make == "empty_dir":
        path.mkdir()
    elif make == "other_file":
        path = tmp_path / "model.bin"
        path.write_bytes(b"x")
    with pytest.raises(ModelNotFoundError, match=str(path)):
        resolve_student_folder(path, tmp_path / "cache")
    assert not (tmp_path / "cache").exists()


def test_converted_gguf_trains_and_generates(converted: tuple[Path, Path, list[str]], tmp_path: Path) -> None:
    _, folder, _ = converted
    s = Student.load(folder, plan_training("none"), LoraParams(r=4, alpha=8), max_length=64)
    stats = StudentTrainer(s).train([("Review: good\nSentiment:", " positive")] * 4, TrainParams(epochs=1, batch_size=2), seed=0, out_dir=tmp_path / "a")
    assert stats.steps == 2 and (tmp_path / "a" / "adapter_model.safetensors").is_file()
    outs = StudentScorer(s).generate(["Review: good\nSentiment:", "Hi"], max_new_tokens=4, stop=["\n"], batch_size=2)
    assert len(outs) == 2 and all(isinstance(o, str) for o in outs)
    s.free()
