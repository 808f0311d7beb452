"""Models checked from their headers when a run is created: broken files are refused with one line naming the file,
and nothing is written to the store."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from conftest import tiny_config_doc

from engine.config.schema import resolve
from engine.run.runs import prepare
from models.errors import ModelFileError
from models.model_check import GGUF_TRAINABLE, check_hf_folder, check_model, read_gguf_header

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hf_folder(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny GGUF converted to a Hugging Face folder (what the student path trains)."""
    from models.convert import resolve_student_folder

    return resolve_student_folder(tiny_gguf, tmp_path_factory.mktemp("hf_cache"))


def _gguf_with_arch(path: Path, arch: str) -> Path:
    import gguf
    import numpy as np

    writer = gguf.GGUFWriter(path, arch)
    writer.add_token_list(["a", "b"])
    writer.add_tensor("blk.0.attn_q.weight", np.zeros((4, 4), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_good_models_pass(tiny_gguf: Path, hf_folder: Path) -> None:
    check_model(tiny_gguf, "student", ["q_proj", "v_proj"])
    check_model(tiny_gguf, "teacher")
    check_model(hf_folder, "student", ["q_proj", "v_proj"])
    header = read_gguf_header(tiny_gguf)
    assert header.metadata["general.architecture"] == "llama" and len(header.tensors) == 2 + 9 * 2 + 1


def test_trainable_architectures_are_transformers_own() -> None:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    assert set(GGUF_TRAINABLE) <= set(GGUF_SUPPORTED_ARCHITECTURES)


def _broken_ggufs(tiny_gguf: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    data = tiny_gguf.read_bytes()
    cases = {
        "data past the end": (data[: len(data) - 4096], "truncated GGUF: tensor 'output.weight' ends at byte"),
        "cut in the header": (data[:3000], "truncated GGUF: the header runs past the end of the file (3000 bytes)"),
        "not GGUF": (b"<html>404 Not Found</html>", "not a GGUF file (it starts with b'<htm', not b'GGUF')"),
        "empty": (b"", "not a GGUF file (it is empty)"),
        "bad version": (data[:4] + (9).to_bytes(4, "little") + data[8:], "GGUF version 9 is not supported"),
    }
    out = {}
    for name, (content, message) in cases.items():
        path = folder / f"{name.replace(' ', '_')}.gguf"
        path.write_bytes(content)
        out[name] = (path, message)
    return out


def test_broken_gguf_files_are_refused_with_one_line(tiny_gguf: Path, tmp_path: Path) -> None:
    for name, (path, message) in _broken_ggufs(tiny_gguf, tmp_path).items():
        for role in ("student", "teacher"):
            with pytest.raises(ModelFileError) as err:
                check_model(path, role)
            text = str(err.value)
            assert text.startswith(f"{path}: ") and message in text and "\n" not in text, (name, text)


def test_an_architecture_the_student_cannot_train(tiny_gguf: Path, tmp_path: Path, hf_folder: Path) -> None:
    bert = _gguf_with_arch(tmp_path / "bert.gguf", "bert")
    check_model(bert, "teacher")  # llama.cpp runs it; transformers cannot train it
    with pytest.raises(ModelFileError, match=r"bert.gguf: architecture 'bert' cannot be trained by the student path"):
        check_model(bert, "student")
    with pytest.raises(ModelFileError, match=r"none of lora.target_modules \(c_attn\) exists in this model"):
        check_model(tiny_gguf, "student", ["c_attn"])
    seq2seq = tmp_path / "t5"
    shutil.copytree(hf_folder, seq2seq)
    config = json.loads((seq2seq / "config.json").read_text())
    (seq2seq / "config.json").write_text(json.dumps({**config, "architectures": ["T5ForConditionalGeneration"]}))
    with pytest.raises(ModelFileError, match="architecture T5ForConditionalGeneration is not a causal language model"):
        check_model(seq2seq, "student")


def test_hugging_face_folders_with_missing_or_cut_files(hf_folder: Path, tmp_path: Path) -> None:
    def broken(name: str) -> Path:
        folder = tmp_path / name
        shutil.copytree(hf_folder, folder)
        return folder

    no_weights = broken("no_weights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(ModelFileError, match=r"no_weights: no weights file \(model.safetensors"):
        check_hf_folder(no_weights)
    no_tokenizer = broken("no_tokenizer")
    for name in ("tokenizer.json", "tokenizer.model", "vocab.json", "merges.txt"):
        (no_tokenizer / name).unlink(missing_ok=True)
    with pytest.raises(ModelFileError, match=r"no_tokenizer: no tokenizer files \(tokenizer.json"):
        check_hf_folder(no_tokenizer)
    cut = broken("cut")
    weights = cut / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ModelFileError, match=r"cut/model.safetensors: truncated safetensors file: its tensors need"):
        check_hf_folder(cut)
    no_config = broken("no_config")
    (no_config / "config.json").unlink()
    with pytest.raises(ModelFileError, match=r"no_config/config.json: missing"):
        check_hf_folder(no_config)
    sharded = broken("sharded")
    (sharded / "model.safetensors").rename(sharded / "model-00001-of-00002.safetensors")
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}))
    with pytest.raises(ModelFileError, match=r"model-00002-of-00002.safetensors: missing \(listed in"):
        check_hf_folder(sharded)


def test_prepare_refuses_a_truncated_teacher(tiny_gguf: Path, tmp_path: Path) -> None:
    """Before: accepted, and the run died hours later at the teacher phase."""
    cut = tmp_path / "teacher.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-4096])
    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")
    doc["teacher"]["model"] = str(cut)
    with pytest.raises(ModelFileError, match=f"^{cut}: truncated GGUF"):
        prepare(resolve(doc))


def test_cli_refuses_a_broken_model_and_writes_nothing(tiny_gguf: Path, tmp_path: Path) -> None:
    cut = tmp_path / "student.gguf"
    cut.write_bytes(tiny_gguf.read_bytes()[:-4096])
    doc = tiny_config_doc(tiny_gguf, tmp_path / "store" / "l2l.db")
    doc["student"]["model"] = str(cut)
    config = tmp_path / "run.toml"
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "1000"}
    proc = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "run", str(config)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {cut}: truncated GGUF: tensor"), proc.stderr
    assert not (tmp_path / "store").exists(), "no store was created"
