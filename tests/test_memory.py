"""The dry-run memory estimate reads real model shapes and grows with what drives memory; heap release is safe."""

from __future__ import annotations

from pathlib import Path

from engine.tools.dry_run import estimate_memory as estimate_run
from models.convert import resolve_student_folder
from models.memory import describe, estimate_phases, folder_shape, gguf_shape, release_heap


def test_gguf_and_converted_folder_give_the_same_shape(tiny_gguf: Path, tmp_path: Path) -> None:
    from_gguf = gguf_shape(tiny_gguf)
    from_folder = folder_shape(resolve_student_folder(tiny_gguf, tmp_path / "cache"))
    assert from_gguf.params == from_folder.params > 0
    for field in ("layers", "hidden", "intermediate", "kv_dim", "vocab"):
        assert getattr(from_gguf, field) == getattr(from_folder, field), field


def test_estimate_grows_with_batch_sequence_and_context(tiny_gguf: Path) -> None:
    shape = gguf_shape(tiny_gguf)
    base = dict(batch_size=8, longest_tokens=64, eval_batch=16, eval_tokens=64, n_ctx=4096)
    ref = estimate_phases(shape, shape, **base)
    assert estimate_phases(shape, shape, **{**base, "batch_size": 16}).train_mb > ref.train_mb
    assert estimate_phases(shape, shape, **{**base, "longest_tokens": 256}).train_mb > ref.train_mb
    assert estimate_phases(shape, shape, **{**base, "n_ctx": 16384}).teacher_mb > ref.teacher_mb
    assert estimate_phases(shape, None, **base).teacher_mb is None
    assert ref.peak_mb == max(ref.train_mb, ref.eval_mb, ref.teacher_mb)


def test_dry_run_shows_the_estimate(tiny_config) -> None:
    from engine.tools.dry_run import dry_run_sections

    sections = dry_run_sections(tiny_config)
    est = sections["memory"]
    assert est.peak_mb > 400 and not est.on_gpu
    rows = describe(est)
    assert any(key.startswith("estimated peak") for key in rows)
    assert sections["sizes"]["  teacher phase"].endswith("GB")


def test_estimate_uses_the_seed_lengths(tiny_config) -> None:
    short = estimate_run(tiny_config, [("Review: fine\nSentiment:", " positive")], ["Review: fine\nSentiment:"])
    long = estimate_run(tiny_config, [("Review: " + "long " * 150 + "\nSentiment:", " positive")], ["x"])
    assert long.train_mb > short.train_mb


def test_release_heap_is_harmless() -> None:
    release_heap()
    release_heap()
