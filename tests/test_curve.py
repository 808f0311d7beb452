"""The data-efficiency curve: nested seed draws, the report's labels-saved interpolation on known values, the eda
writer, and the training length chosen on validation."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import tiny_config_doc

from engine.reports.curve import LabelsSaved, curve, labels_saved, needed_size
from engine.reports.sweep_report import RunFacts, SweepReport
from engine.store.rows import Sweep
from engine.store.status import RunStatus


def _facts(arm: str, size: int, seed_set: int, test: float) -> RunFacts:
    return RunFacts(arm=arm, seed_set=seed_set, run_id=0, status=RunStatus.FINISHED, best_round=0, val_acc=test,
                    test_acc=test, teacher_calls=0, examples_requested=0, kept=0, rejected=Counter(), minutes=0.0,
                    val_by_round=[test], seed_size=size)


def _report(values: dict[tuple[str, int], list[float]]) -> SweepReport:
    runs = [_facts(arm, size, s, v) for (arm, size), vs in values.items() for s, v in enumerate(vs)]
    sizes = sorted({size for _, size in values})
    arms = list(dict.fromkeys(arm for arm, _ in values))
    sweep = Sweep(id=1, name="t", created="", updated=None, status="finished", doc={}, arms=[], seed_sets=3,
                  seed_sizes=sizes, judge=None, digest="", source=None, pid=None, pid_started=None, host=None, ended=None,
                  error=None)
    return SweepReport(sweep=sweep, runs=runs, arms=arms)


def test_needed_size_interpolates_in_log_size() -> None:
    sizes, acc = [8, 16, 32], [0.60, 0.70, 0.80]
    assert needed_size(sizes, acc, 0.70) == 16.0
    assert needed_size(sizes, acc, 0.75) == pytest.approx(2 ** 4.5)  # halfway in log2 between 16 and 32
    assert needed_size(sizes, acc, 0.55) == 8.0  # already there at the smallest size
    assert needed_size(sizes, acc, 0.81) is None  # beyond the largest size measured


def test_labels_saved_on_a_sweep_with_known_values() -> None:
    report = _report({
        ("plain_tuned", 8): [0.60, 0.60, 0.60], ("plain_tuned", 16): [0.70, 0.70, 0.70], ("plain_tuned", 32): [0.80] * 3,
        ("llm2llm", 8): [0.70, 0.70, 0.70], ("llm2llm", 16): [0.75, 0.75, 0.75], ("llm2llm", 32): [0.90] * 3,
        ("oracle", 8): [0.95] * 3, ("oracle", 16): [0.95] * 3, ("oracle", 32): [0.95] * 3,
    })
    points = curve(report)
    assert points["llm2llm"][16].mean == pytest.approx(0.75) and points["llm2llm"][16].n == 3
    saved = {s.size: s for s in labels_saved(report, resamples=200)}
    # the oracle is the ceiling, never the "best augmenting arm"
    assert all(s.arm == "llm2llm" for s in saved.values())
    assert saved[8].needed == pytest.approx(16.0) and saved[8].low == pytest.approx(16.0) and saved[8].high == pytest.approx(16.0)
    assert saved[16].needed == pytest.approx(2 ** 4.5)
    assert saved[32].needed is None and "beyond the curve" in saved[32].show()
    assert saved[8].show().endswith("+8 labels")


def test_labels_saved_interval_widens_with_spread_between_seed_sets() -> None:
    report = _report({
        ("plain", 8): [0.55, 0.60, 0.65], ("plain", 16): [0.65, 0.70, 0.75],
        ("eda", 8): [0.60, 0.70, 0.80], ("eda", 16): [0.70, 0.72, 0.74],
    })
    first = labels_saved(report, resamples=500)[0]
    assert isinstance(first, LabelsSaved) and first.arm == "eda" and first.plain == "plain"
    assert first.low is not None and first.low <= first.needed  # type: ignore[operator]
    assert first.high is None, "some resamples of the seed sets put eda beyond plain's largest size"


def test_larger_seed_sets_contain_the_smaller_ones(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.data.load import load_splits
    from engine.tasks.registry import make_task

    for seed_draw in (None, 3):
        drawn = {}
        for size in (2, 4, 8):
            doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")
            doc["data"].update(seed_size=size, validation_size=4, test_size=4)
            if seed_draw is not None:
                doc["data"]["seed_draw"] = seed_draw
            cfg = resolve(doc)
            splits = load_splits(cfg, make_task(cfg.task))
            drawn[size] = {ex.input for ex in splits.seed}
            assert Counter(ex.answer for ex in splits.seed) == {"negative": size // 2, "positive": size // 2}
        assert drawn[2] < drawn[4] < drawn[8], f"seed_draw {seed_draw}: nested draws"


def test_eda_edits_the_miss_deterministically() -> None:
    from engine.augment.eda import edits, vocabulary

    miss = "the acting is wooden and the plot drags on far too long for a film this thin"
    vocab = vocabulary(["a warm and funny film", "the cast is superb", miss])
    first = edits(miss, 3, vocab, random.Random(5))
    again = edits(miss, 3, vocab, random.Random(5))
    assert first == again and len(first) == 3 and len(set(first)) == 3 and miss not in first
    words = set(miss.split())
    for text in first:  # an edit of the miss: mostly its own words, the rest from the seed vocabulary
        new = set(text.split())
        assert len(new & words) >= len(words) - 3
        assert new - words <= set(vocab)
    assert edits(miss, 3, vocab, random.Random(6)) != first


def test_eda_arm_never_keeps_a_validation_or_test_text(tiny_gguf: Path, tmp_path: Path) -> None:
    """A run with loop.source = eda writes edits of its misses; the filter keeps none equal to an evaluation row."""
    from engine.config.schema import resolve
    from engine.data.dedup import normalise
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db", source="eda", examples_per_miss=3)
    doc["checks"] = {"verify": False, "meta_text": False, "prompt_echo": False}
    cfg = resolve(doc)
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))
    assert Loop(store, run_id).run() == "finished"
    synthetic = store.examples(run_id, split="synthetic")
    assert synthetic, "the tiny student misses seeds, so eda wrote candidates"
    assert store.count("teacher_calls") == 0, "eda asks no model"
    seeds = {r.id: r for r in store.examples(run_id, split="seed")}
    evaluation = {normalise(r.input) for split in ("validation", "test") for r in store.examples(run_id, split=split)}
    for row in synthetic:
        parent = seeds[row.parent_id]
        assert row.answer == parent.answer and row.meta["origin"] == "eda"
        if row.status == "kept":
            assert normalise(row.input) not in evaluation


def test_training_length_chosen_on_validation_keeps_the_best_adapter(tiny_gguf: Path, tmp_path: Path) -> None:
    """A high learning rate makes validation peak early: the saved adapter is the best look's, its step recorded."""
    import torch
    from safetensors.torch import load_file

    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db", rounds=1)
    doc["train"] = {"steps": 12, "eval_every": 2, "patience": 2, "batch_size": 4, "learning_rate": 0.5,
                    "scheduler": "constant", "warmup_ratio": 0}
    cfg = resolve(doc)
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))
    assert Loop(store, run_id).run() == "finished"
    train = store.round(run_id, 0).train
    looks = train["selection"]
    assert looks and all(step % 2 == 0 or step == train["steps_run"] for step, _ in looks)
    best_score = max(score for _, score in looks)
    first_best = min(step for step, score in looks if score == best_score)
    assert train["steps"] == first_best, "the earliest best look is the chosen length"
    assert train["steps_run"] <= 12
    # the saved adapter scores what the chosen look scored
    assert store.round(run_id, 0).val_acc == pytest.approx(best_score)
    # and it is the adapter a fresh training of exactly that many steps gives (constant lr: the same trajectory)
    doc2 = tiny_config_doc(tiny_gguf, tmp_path / "plain.db", rounds=1)
    doc2["train"] = {**doc["train"], "steps": train["steps"], "eval_every": 0}
    cfg2 = resolve(doc2)
    store2 = Store(cfg2.store)
    run2 = create_run(store2, prepare(cfg2))
    assert Loop(store2, run2).run() == "finished"
    a = load_file(Path(store.round(run_id, 0).adapter_path) / "adapter_model.safetensors")
    b = load_file(Path(store2.round(run2, 0).adapter_path) / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6)
