"""The unlabeled pool as a source of new inputs, on real parts: BM25 retrieval on real reviews, a tiny run whose pool
rows are verified blind by the tiny teacher, lineage, resume after kill -9 mid-labelling, and each bad pool."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, tiny_config_doc

from engine.data.retrieval import BM25
from models.errors import ConfigError, DataError

POOL = FIXTURES / "rt_unlabeled_60.jsonl"


def _texts() -> list[str]:
    return [json.loads(line)["text"] for line in POOL.read_text(encoding="utf-8").splitlines()]


def test_bm25_ranks_the_row_that_shares_the_rare_words_first() -> None:
    texts = _texts()
    index = BM25(texts)
    for i in (3, 17, 41):
        words = texts[i].split()
        query = " ".join(words[: max(4, len(words) // 2)])  # the first half of a real review
        assert index.nearest(query, 1) == [i]
    allowed = [j != 17 for j in range(len(texts))]
    import numpy as np

    assert 17 not in index.nearest(" ".join(texts[17].split()[:8]), 5, np.array(allowed))
    assert index.nearest("zzzz qqqq", 3) == [0, 1, 2], "no shared word: ties keep file order"


def _pool_doc(tiny_gguf: Path, store: Path, pool: Path = POOL, **loop: object) -> dict:
    doc = tiny_config_doc(tiny_gguf, store, source="pool", examples_per_miss=2, **loop)
    doc["data"]["unlabeled"] = str(pool)
    return doc


def test_pool_run_keeps_real_rows_with_lineage_and_never_an_evaluation_text(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.data.dedup import normalise
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    cfg = resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db"))
    prepared = prepare(cfg)
    assert prepared.splits.notes["unlabeled"]["dropped_as_split"] == 20, "every seed, validation and test text dropped"
    store = Store(cfg.store)
    run_id = create_run(store, prepared)
    assert Loop(store, run_id).run() == "finished"
    rows = store.examples(run_id, split="synthetic")
    assert rows, "the tiny student misses seeds, so pool rows were proposed"
    pool_texts = {normalise(t): i for i, t in enumerate(_texts())}
    evaluation = {normalise(r.input) for s in ("seed", "validation", "test") for r in store.examples(run_id, split=s)}
    calls = {c["key"]: c for c in store.db.query("SELECT key, purpose FROM teacher_calls")}
    for row in rows:
        meta = row.meta
        assert meta["origin"] == "pool" and meta["pool_file"] == str(POOL)
        assert pool_texts[normalise(row.input)] == meta["pool_row"], "the row's text is the pool file's row"
        assert normalise(row.input) not in evaluation
        assert row.parent_id is not None
        assert calls[row.teacher_call]["purpose"] == "verify", "labelled by the blind verification call"
    assert len({r.meta["pool_row"] for r in rows}) == len(rows), "a pool row is proposed once per run"

    # a sweep shares this finished run with a cell whose pool is the same texts at another path (a worktree, a copied
    # project), and with no cell whose pool differs
    from engine.experiments.run_identity import finished_twin

    moved = tmp_path / "elsewhere" / POOL.name
    moved.parent.mkdir()
    moved.write_bytes(POOL.read_bytes())
    cell = prepare(resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db", moved)))
    assert finished_twin(store, cell) == run_id
    # and `l2l merge` calls them the same run: one notion of "the same experiment" (engine/experiments/run_identity.py)
    from engine.data.example_rows import content_hash
    from engine.experiments.run_identity import fingerprint
    from engine.tasks.prompt_templates import prompts_digest

    run = store.run(run_id)
    stored = {s: [e.content_hash for e in store.examples(run_id, split=s)] for s in ("seed", "validation", "test")}
    wanted = {s: [content_hash(ex) for ex in getattr(cell.splits, s)] for s in ("seed", "validation", "test")}
    assert fingerprint(run.config, run.splits, stored, run.status, run.versions["prompts"]) == fingerprint(
        cell.cfg.model_dump(mode="json"), cell.splits.notes, wanted, "finished", prompts_digest())
    moved.write_text("\n".join(POOL.read_text(encoding="utf-8").splitlines()[:-1]) + "\n", encoding="utf-8")
    assert finished_twin(store, prepare(resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db", moved)))) is None

    # a run stored before pool digests (no digest in its notes) is still the twin of a cell whose pool is at its path
    notes = store.run(run_id).splits
    store.update_run(run_id, splits={**notes, "unlabeled": {
        k: v for k, v in notes["unlabeled"].items() if k != "digest"}})
    assert finished_twin(store, prepare(resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db", POOL)))) == run_id
    assert finished_twin(store, prepare(resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db", moved)))) is None

    # a run made with other teacher prompts is no twin (its config is the same, its teacher calls are not); one from
    # before the prompts' digest is taken at its word
    same = prepare(resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db", POOL)))
    versions = store.run(run_id).versions
    assert versions["prompts"] == prompts_digest()
    store.update_run(run_id, versions={**versions, "prompts": "0" * 16})
    assert finished_twin(store, same) is None
    store.update_run(run_id, versions={k: v for k, v in versions.items() if k != "prompts"})
    assert finished_twin(store, same) == run_id


def test_data_unlabeled_counts_only_where_a_run_draws_from_it() -> None:
    from engine.experiments.run_identity import config_without_paths

    def key(source: str, path: str, digest: str | None = None) -> str:
        notes = {"unlabeled": {"digest": digest}} if digest else {}
        return config_without_paths({"data": {"unlabeled": path}, "loop": {"source": source}}, notes)

    assert key("teacher", "/a/pool.jsonl") == key("teacher", "/b/pool.jsonl") == config_without_paths(
        {"data": {}, "loop": {"source": "teacher"}}), "the teacher's runs never read the pool"
    assert key("pool", "/a/pool.jsonl", "d1") == key("pool", "/b/pool.jsonl", "d1") != key("pool", "/a/pool.jsonl", "d2")
    assert key("pool", "/a/pool.jsonl") != key("pool", "/b/pool.jsonl"), "a run from before digests keeps its path"


def test_pool_random_draws_other_rows_than_nearest(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare
    from engine.store.db import Store

    picked = {}
    for pick in ("nearest", "random"):
        cfg = resolve(_pool_doc(tiny_gguf, tmp_path / f"{pick}.db", rounds=2, pool_pick=pick))
        store = Store(cfg.store)
        run_id = create_run(store, prepare(cfg))
        assert Loop(store, run_id).run() == "finished"
        picked[pick] = sorted(r.meta["pool_row"] for r in store.examples(run_id, split="synthetic"))
    assert picked["nearest"] and picked["random"] and picked["nearest"] != picked["random"]


def test_resume_after_kill_mid_labelling_pays_no_call_twice(tiny_gguf: Path, tmp_path: Path) -> None:
    import tomli_w
    from test_sweep import l2l

    from engine.store.db import Store

    config = tmp_path / "pool.toml"
    config.write_text(tomli_w.dumps(_pool_doc(tiny_gguf, tmp_path / "l2l.db")), encoding="utf-8")
    first = l2l("run", str(config), fault="verify:0:reply2:kill")
    assert first.returncode == -9, first.stderr[-2000:]
    store = Store(tmp_path / "l2l.db", create=False)
    before = {row["key"]: row["created"] for row in store.db.query("SELECT key, created FROM teacher_calls")}
    assert len(before) >= 2
    store.close()
    again = l2l("resume", "1", "--store", str(tmp_path / "l2l.db"))
    assert again.returncode == 0, again.stderr[-2000:]
    store = Store(tmp_path / "l2l.db", create=False)
    after = {row["key"]: row["created"] for row in store.db.query("SELECT key, created FROM teacher_calls")}
    assert all(after[k] == v for k, v in before.items()), "a committed label call was paid again"
    assert store.run(1).status == "finished"


@pytest.mark.parametrize("case", ["empty", "bad_row", "no_verify", "not_classification"])
def test_a_bad_pool_is_one_clear_error_and_writes_nothing(case: str, tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.run.runs import prepare

    pool = tmp_path / "pool.jsonl"
    pool.write_text(POOL.read_text(encoding="utf-8"), encoding="utf-8")
    doc = _pool_doc(tiny_gguf, tmp_path / "l2l.db", pool)
    if case == "empty":
        pool.write_text("", encoding="utf-8")
    elif case == "bad_row":
        lines = pool.read_text(encoding="utf-8").splitlines()
        lines[4] = json.dumps({"review": "a row without the text field"})
        pool.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif case == "no_verify":
        doc["checks"] = {"verify": False}
    else:
        doc["task"] = {"preset": "mawps"}
        doc["data"].update(pool=str(FIXTURES / "mawps_10.jsonl"), seed_size=4, validation_size=2, test_size=2)
    expected = {"empty": (DataError, "no rows"), "bad_row": (DataError, "line 5: field 'text' missing"),
                "no_verify": (ConfigError, "needs checks.verify = true"),
                "not_classification": (ConfigError, "needs a classification task")}[case]
    with pytest.raises(expected[0], match=expected[1]) as err:
        prepare(resolve(doc))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "l2l.db").exists()


def test_pool_warnings_are_one_line_each(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import resolve
    from engine.run.runs import prepare

    pool = tmp_path / "labelled.jsonl"
    rows = [json.loads(line) for line in (FIXTURES / "rotten_tomatoes_20.jsonl").read_text(encoding="utf-8").splitlines()]
    extra = [{"text": t, "label": "positive"} for t in _texts()[22:40]]
    extra.append({"text": "Este filme é uma obra-prima absoluta, com atuações maravilhosas e uma história comovente do "
                          "começo ao fim.", "label": "positive"})
    pool.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows + extra), encoding="utf-8")
    warnings = prepare(resolve(_pool_doc(tiny_gguf, tmp_path / "l2l.db", pool))).warnings
    joined = "\n".join(warnings)
    assert "the pool's labels are not used" in joined
    assert "20 rows equal a seed, validation or test text" in joined
    assert "in another language than the seeds" in joined
    assert all("\n" not in w for w in warnings)
