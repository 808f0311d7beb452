"""The whole loop on real parts: tiny random GGUF as teacher (llama.cpp) and student (transformers + peft), real SQLite."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import tiny_config_doc

from engine.config.schema import resolve
from engine.reports.run_report import overhead_rows
from engine.run.loop import Loop
from engine.run.runs import create_run, prepare, request_stop
from engine.store.db import Store


def store_counts(store: Store, run_id: int) -> dict[str, object]:
    """Everything a run produced, as counts and scores (ids and timings excluded)."""
    rows = store.db.query(
        "SELECT split, status, COALESCE(reason, '') AS reason, COUNT(*) AS n FROM examples WHERE run_id = ? "
        "GROUP BY split, status, reason ORDER BY split, status, reason", [run_id])
    rounds = [(r.idx, r.phase, r.train_size, r.misses, r.generated, r.kept, r.rejected,
               r.seed_acc, r.val_acc, r.test_acc) for r in store.rounds(run_id)]
    return {
        "examples": [tuple(r.values()) for r in rows],
        "rounds": rounds,
        "predictions": store.count("predictions", run_id=run_id),
        "teacher_calls": store.count("teacher_calls", run_id=run_id),
        "synthetic_inputs": sorted(r.input for r in store.examples(run_id, split="synthetic")),
        "best_round": store.run(run_id).best_round,
        "status": store.run(run_id).status,
    }


def test_two_round_run_records_rounds_lineage_filters(tiny_run_store: tuple[Path, int]) -> None:
    path, run_id = tiny_run_store
    store = Store(path, create=False)
    run = store.run(run_id)
    assert run.status == "finished" and run.best_round in (0, 1)
    assert run.plan["mode"] == "lora-fp32" and run.plan["reason"]
    r0, r1 = store.rounds(run_id)
    assert (r0.phase, r1.phase) == ("done", "done")
    seed = store.examples(run_id, split="seed")
    assert r0.train_size == len(seed) == 8
    preds0 = {p.example_id: p for p in store.predictions(run_id, 0)}
    missed = {e.id for e in seed if not preds0[e.id].correct}
    assert r0.misses == len(missed) > 0, "a random student must miss some seed examples"
    # one teacher call per miss, each asking for k=2 examples
    assert store.count("teacher_calls", run_id=run_id, round=0, purpose="write") == len(missed)
    synthetic = store.examples(run_id, split="synthetic")
    assert len(synthetic) == r0.generated == r0.kept + r0.rejected
    assert {s.parent_id for s in synthetic} <= missed, "each synthetic example knows the miss it came from"
    assert all(s.origin_round == 0 and s.teacher_call for s in synthetic)
    reasons = r0.filter["reasons"]
    assert sum(reasons.values()) == r0.rejected
    assert {s.reason for s in synthetic if s.status == "rejected"} == set(reasons)
    kept = [s for s in synthetic if s.status == "kept"]
    assert r1.train_size == len(seed) + len(kept)
    # round 1 is the last: evaluated, not augmented
    assert r1.generated is None and r1.val_acc is not None and r1.test_acc is not None
    assert Path(r0.adapter_path, "adapter_model.safetensors").exists()
    assert Path(r0.adapter_path).parent.joinpath("config.toml").exists()
    for phase in ("train", "eval", "augment", "filter"):
        assert r0.record(phase)["seconds"] >= 0 and r0.record(phase)["peak_rss_mb"] > 0
        assert r0.record(phase)["wall_seconds"] >= r0.record(phase)["seconds"]
    for phase in ("train", "eval", "augment"):
        assert 0 < r0.record(phase)["compute_seconds"] <= r0.record(phase)["seconds"], phase
    overhead = overhead_rows(store, run_id)
    assert [r["round"] for r in overhead] == [0, 1]
    for row in overhead:
        assert row["wall_s"] > row["compute_s"] > 0 and 0 < row["overhead_share"] < 1
    kinds = {e.kind for e in store.events(run_id)}
    assert {"status", "phase", "teacher"} <= kinds


def test_rejections_include_a_duplicate_of_seed(tiny_gguf: Path, tmp_path: Path) -> None:
    """Near-duplicate filter runs against seed/validation/test inputs (no leakage)."""
    from engine.data.dedup import DedupIndex

    cfg = resolve(tiny_config_doc(tiny_gguf, tmp_path / "l2l.db"))
    prepared = prepare(cfg)
    index = DedupIndex(cfg.loop.near_duplicate)
    for i, ex in enumerate(prepared.splits.test):
        index.add(ex.input, i)
    assert index.match(prepared.splits.test[0].input)[0] == "exact_duplicate"
    assert index.match(prepared.splits.test[1].input + " !")[0] in ("exact_duplicate", "near_duplicate")


def test_second_run_is_answered_from_the_teacher_cache(tiny_run_store: tuple[Path, int], tmp_path: Path,
                                                       tiny_gguf: Path) -> None:
    import shutil

    path, run_id = tiny_run_store
    shutil.copy(path, tmp_path / "l2l.db")
    store = Store(tmp_path / "l2l.db")
    cfg = resolve(tiny_config_doc(tiny_gguf, tmp_path / "l2l.db"))
    again = create_run(store, prepare(cfg))
    assert Loop(store, again).run() == "finished"
    aug = store.round(again, 0).augment
    assert aug["requests"] > 0 and aug["cache_hits"] == aug["requests"]
    assert store.count("teacher_calls", run_id=again) == 0, "no call was paid twice"
    first, second = store_counts(store, run_id), store_counts(store, again)
    assert first["rounds"] == second["rounds"] and first["synthetic_inputs"] == second["synthetic_inputs"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    folder = tmp_path_factory.mktemp("straight")
    cfg = resolve(tiny_config_doc(tiny_gguf, folder / "l2l.db"))
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))
    assert Loop(store, run_id).run() == "finished"
    return store_counts(store, run_id)


# kill -9 at every phase boundary and inside every phase, then resume: tests/test_crash.py


def test_stop_request_finishes_the_phase_then_resume(tiny_gguf: Path, tmp_path: Path,
                                                     uninterrupted: dict[str, object]) -> None:
    cfg = resolve(tiny_config_doc(tiny_gguf, tmp_path / "l2l.db"))
    store = Store(cfg.store)
    run_id = create_run(store, prepare(cfg))
    loop = Loop(store, run_id)
    original = loop._phase_train

    def train_then_stop(idx: int) -> None:
        original(idx)
        request_stop(store, run_id)

    loop._phase_train = train_then_stop  # the user presses stop while round 0 trains
    assert loop.run() == "stopped"
    assert store.round(run_id, 0).phase == "eval"
    assert Loop(store, run_id).run() == "finished"
    assert store_counts(store, run_id) == uninterrupted
