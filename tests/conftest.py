"""Shared fixtures: a tiny random GGUF (teacher and student at once), tiny run configs, a finished tiny run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Never touch the user's store; model conversions go to a session cache."""
    home = tmp_path_factory.mktemp("l2l_home")
    os.environ["L2L_HOME"] = str(home)
    os.environ["L2L_MODEL_CACHE"] = str(home / "models")
    os.environ["HF_DATASETS_CACHE"] = str(home / "datasets")


@pytest.fixture(scope="session")
def tiny_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight llama GGUF (byte vocabulary, chat template) for llama.cpp and transformers."""
    from models.random_gguf import write_random_llama_gguf

    return write_random_llama_gguf(tmp_path_factory.mktemp("gguf") / "tiny.gguf")


def tiny_config_doc(tiny_gguf: Path, store: Path, **loop: object) -> dict:
    """A 2-round sentiment run on 8 real seed rows with the tiny GGUF as student and teacher."""
    return {
        "name": "tiny",
        "seed": 7,
        "store": str(store),
        "task": {"preset": "rotten_tomatoes"},
        "data": {"pool": str(FIXTURES / "rotten_tomatoes_20.jsonl"), "seed_size": 8, "validation_size": 6,
                 "test_size": 6, "split_seed": 1},
        "student": {"model": str(tiny_gguf), "max_length": 256},
        "lora": {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "train": {"epochs": 2, "batch_size": 4, "learning_rate": 1e-2},
        "eval": {"batch_size": 8, "max_new_tokens": 8},
        "teacher": {"model": str(tiny_gguf), "n_ctx": 8192, "parallel": 4, "max_tokens": 1024, "retries": 1, "n_threads": 1,
                    "temperature": 0.8},
        "loop": {"rounds": 2, "examples_per_miss": 2, "score_test_every_round": True, **loop},
    }


@pytest.fixture
def tiny_config(tiny_gguf: Path, tmp_path: Path):
    """A RunConfig of a tiny 2-round run whose store lives in tmp_path."""
    from engine.config.schema import resolve

    return resolve(tiny_config_doc(tiny_gguf, tmp_path / "l2l.db"))


@pytest.fixture(scope="session")
def tiny_run_store(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A store holding one finished tiny 2-round run (made once per session; copy it before writing)."""
    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    folder = tmp_path_factory.mktemp("tiny_run")
    cfg = resolve(tiny_config_doc(tiny_gguf, folder / "l2l.db"))
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))
    assert Loop(store, run_id).run() == "finished"
    store.close()
    return folder / "l2l.db", run_id


@pytest.fixture
def store_copy(tiny_run_store: tuple[Path, int], tmp_path: Path) -> tuple[Path, int]:
    """A writable copy of the finished tiny run's store (adapters included)."""
    src, run_id = tiny_run_store
    shutil.copytree(src.parent, tmp_path / "copy")
    return tmp_path / "copy" / src.name, run_id
