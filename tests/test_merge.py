"""`l2l merge` on real stores: a tiny sweep killed after its first cell (store A) and the same sweep finished (store B)
merged into a third store; ids remapped, lineage and sweep cells intact, teacher calls once, a re-merge changes
nothing, kill -9 mid-merge leaves the target as it was, and bad sources are refused with one line."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from conftest import tiny_config_doc

from engine.store.db import SCHEMA_VERSION, Store

REPO = Path(__file__).resolve().parents[1]
ARMS = ["llm2llm", "plain"]


def l2l(*args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """The `l2l` command in a process of its own (L2L_FAULT set only when a fault is given)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("L2L_FAULT", None)
    if fault:
        env["L2L_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "l2l_tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900)


def dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in rowid order."""
    conn = sqlite3.connect(str(path))
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: conn.execute(f"SELECT * FROM [{t}] ORDER BY rowid").fetchall() for t in tables}
    finally:
        conn.close()


def snapshot_copy(src: Path, dst: Path) -> Path:
    """A copy of a store taken through SQLite (a killed writer's WAL included)."""
    a, b = sqlite3.connect(str(src)), sqlite3.connect(str(dst))
    a.backup(b)
    a.close()
    b.close()
    return dst


def created_run(tiny_gguf: Path, store: Path, seed: int) -> int:
    """A run created (validated, examples written) and never started."""
    from engine.config.schema import resolve
    from engine.run.runs import create_run, prepare

    doc = tiny_config_doc(tiny_gguf, store)
    doc["seed"] = seed
    st = Store(store)
    try:
        return create_run(st, prepare(resolve(doc)))
    finally:
        st.close()


def rerun_renamed(path: Path, run_id: int, name: str) -> int:
    """The same run again under another name, to the end: its teacher calls come from the cache the first one filled."""
    from engine.config.schema import resolve
    from engine.run.loop import Loop
    from engine.run.runs import create_run, prepare

    st = Store(path, create=False)
    try:
        config = st.run(run_id).config
        new_id = create_run(st, prepare(resolve({**config, "name": name})))
        assert Loop(st, new_id).run() == "finished"
        return new_id
    finally:
        st.close()


@pytest.fixture(scope="module")
def stores(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A: the sweep killed after its first cell, plus a run never started; B: the same sweep finished;
    target: a store already holding a run of its own (so every copied id must move)."""
    folder = tmp_path_factory.mktemp("merge")
    work = folder / "work"
    work.mkdir()
    doc = tiny_config_doc(tiny_gguf, work / "l2l.db")
    doc["loop"]["score_test_every_round"] = False
    doc["data"].update(validation_size=4, test_size=4)
    doc["sweep"] = {"arms": ARMS, "seed_sets": 1}
    config = work / "sweep.toml"
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    first = l2l("sweep", str(config), fault="sweep:1:kill")
    assert first.returncode == -9, first.stderr[-3000:]
    a = snapshot_copy(work / "l2l.db", folder / "a.db")
    created_run(tiny_gguf, a, seed=11)
    again = l2l("sweep", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    rerun_renamed(work / "l2l.db", 1, "tiny · llm2llm again")
    b = snapshot_copy(work / "l2l.db", folder / "b.db")
    target = folder / "target.db"
    created_run(tiny_gguf, target, seed=12)
    return {"a": a, "b": b, "target": target}


def fresh_target(stores: dict[str, Path], tmp_path: Path) -> Path:
    return snapshot_copy(stores["target"], tmp_path / "target.db")


def test_merge_remaps_ids_keeps_lineage_and_calls_once(stores: dict[str, Path], tmp_path: Path) -> None:
    target = fresh_target(stores, tmp_path)
    sources = {k: dump(stores[k]) for k in ("a", "b")}
    proc = l2l("merge", str(stores["a"]), str(stores["b"]), "--into", str(target))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {k: dump(stores[k]) for k in ("a", "b")} == sources, "a source was written"
    out = proc.stdout
    assert f"{stores['a']}: 1 runs merged, 0 already there, 1 not merged" in out
    assert f"{stores['b']}: 2 runs merged, 1 already there, 0 not merged" in out
    assert "run 2 not merged: created (tiny)" in out

    a, b, t = (Store(p, create=False) for p in (stores["a"], stores["b"], target))
    cells_b = {c.arm: c.run_id for c in b.sweep_runs(1)}
    (sweep,) = t.sweeps()
    assert sweep.digest == b.sweep(1).digest and sweep.status == "finished", "every cell is in: finished"
    cells_t = {c.arm: c for c in t.sweep_runs(sweep.id)}
    assert set(cells_t) == set(ARMS) and all(c.seed_size == 0 and c.seed_set == 0 for c in cells_t.values())
    assert {arm: c.overrides for arm, c in cells_t.items()} == {c.arm: c.overrides for c in b.sweep_runs(1)}
    assert len(t.runs()) == 4 and t.run(1).name == "tiny" and t.run(1).status == "created"
    for arm in ARMS:  # llm2llm came from A (B's copy of it was skipped), plain from B
        src_store = a if arm == "llm2llm" else b
        src_id = cells_b[arm]
        dst_id = cells_t[arm].run_id
        assert dst_id != src_id, "ids are remapped past the target's own run"
        assert_same_run(src_store, src_id, t, dst_id)

    # each teacher call once: A's calls copied; the renamed re-run in B was answered from them, found there
    keys_b = {r[0] for r in b.db.execute("SELECT key FROM teacher_calls")}
    keys_t = {r[0] for r in t.db.execute("SELECT key FROM teacher_calls")}
    assert keys_b and keys_t == keys_b
    copied_a, present_a = calls_line(out, stores["a"])
    copied_b, present_b = calls_line(out, stores["b"])
    # A's calls: its run's, and the sweep's judge of the teacher (no run owns those: the shared cache)
    judged = a.count("teacher_calls", purpose="judge")
    assert present_a == 0 and copied_a == b.count("teacher_calls", run_id=cells_b["llm2llm"]) + judged
    assert present_b > 0, "the re-run's cached calls were already in the target"
    assert copied_a + copied_b == len(keys_t)
    assert "run 3 → run 4 (tiny · llm2llm again)" in out
    new_id = {cells_b["llm2llm"]: cells_t["llm2llm"].run_id, 2: cells_t["plain"].run_id, 3: 4, None: None}
    assert {k: new_id[r] for k, r in b.db.execute("SELECT key, run_id FROM teacher_calls")} == \
        dict(t.db.execute("SELECT key, run_id FROM teacher_calls").fetchall()), "each call keeps the run that made it"
    assert_same_run(b, 3, t, 4)
    used = {r[0] for r in t.db.execute("SELECT teacher_call FROM examples WHERE teacher_call IS NOT NULL")}
    assert used and used <= keys_t

    from engine.reports.sweep_report import arm_rows, gather

    rows = {r["arm"]: r for r in arm_rows(gather(t, sweep.id))}
    assert set(rows) == set(ARMS)

    before = dump(target)
    for s in (a, b, t):
        s.close()
    again = l2l("merge", str(stores["a"]), str(stores["b"]), "--into", str(target))
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{stores['a']}: 0 runs merged, 1 already there, 1 not merged; teacher calls 0 copied, 0 already there" \
        in again.stdout
    assert f"{stores['b']}: 0 runs merged, 3 already there, 0 not merged" in again.stdout
    assert "sweep cells: 0 added, 1 already there" in again.stdout and "sweep cells: 0 added, 2 already there" in again.stdout
    assert dump(target) == before, "a second merge of the same stores changes nothing"


def calls_line(out: str, source: Path) -> tuple[int, int]:
    """(copied, already there) from a source's first report line."""
    found = re.search(re.escape(f"{source}:") + r".*teacher calls (\d+) copied, (\d+) already there", out)
    assert found, out
    return int(found.group(1)), int(found.group(2))


def assert_same_run(src: Store, src_id: int, dst: Store, dst_id: int) -> None:
    """The copy holds the same run row, rounds, examples (parents pointing at the copies), predictions and events."""
    run_s, run_d = src.run(src_id), dst.run(dst_id)
    assert replace(run_s, id=0) == replace(run_d, id=0)
    assert run_d.splits["workdir"] == run_s.splits["workdir"], "paths are kept as they are"
    assert [replace(r, run_id=0) for r in src.rounds(src_id)] == [replace(r, run_id=0) for r in dst.rounds(dst_id)]
    ex_s, ex_d = src.examples(src_id), dst.examples(dst_id)
    assert len(ex_s) == len(ex_d) > 0
    ids = {s.id: d.id for s, d in zip(ex_s, ex_d, strict=True)}
    assert all(d != s for s, d in ids.items()), "example ids are new (the target's own run holds the old ones)"
    assert [replace(e, id=0, run_id=0, parent_id=None) for e in ex_s] == [replace(e, id=0, run_id=0, parent_id=None) for e in ex_d]
    parents = [(s.parent_id, d.parent_id) for s, d in zip(ex_s, ex_d, strict=True) if s.parent_id is not None]
    if src.run(src_id).name.endswith("llm2llm · set 0"):
        assert parents, "the llm2llm run has teacher-written children"
    assert all(ids[ps] == pd for ps, pd in parents), "lineage points at the copied parents"
    preds_s, preds_d = src.predictions(src_id), dst.predictions(dst_id)
    assert len(preds_s) == len(preds_d) > 0
    assert sorted((p.round, ids[p.example_id], p.output, p.correct) for p in preds_s) == \
        sorted((p.round, p.example_id, p.output, p.correct) for p in preds_d)
    ev = lambda st, rid: [(e.ts, e.kind, e.message, e.data) for e in st.events(rid, limit=10**6)]  # noqa: E731
    assert ev(src, src_id) == ev(dst, dst_id) != []


def test_kill_9_mid_merge_leaves_the_target_as_it_was(stores: dict[str, Path], tmp_path: Path) -> None:
    target = fresh_target(stores, tmp_path)
    before = dump(target)
    killed = l2l("merge", str(stores["a"]), str(stores["b"]), "--into", str(target), fault="merge:2:kill")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert dump(target) == before, "two runs were written, not committed: nothing of them is left"
    done = l2l("merge", str(stores["a"]), str(stores["b"]), "--into", str(target))
    assert done.returncode == 0, done.stderr[-3000:]
    st = Store(target, create=False)
    assert len(st.runs()) == 4 and st.count("sweep_runs") == 2 and st.sweeps()[0].status == "finished"


def test_unfinished_runs_come_only_when_asked(stores: dict[str, Path], tmp_path: Path) -> None:
    from engine.experiments.merge import merge_stores

    (report,) = merge_stores([stores["a"]], tmp_path / "new.db", unfinished=True)
    assert len(report.merged) == 2 and not report.not_merged
    st = Store(tmp_path / "new.db", create=False)
    assert sorted(r.status for r in st.runs()) == ["created", "finished"]
    (sweep,) = st.sweeps()
    assert sweep.status == "stopped" and sweep.pid is None, "the killed sweep's worker is not this store's"
    assert len(st.sweep_runs(sweep.id)) == 1


def test_a_newer_store_is_refused_naming_it(stores: dict[str, Path], tmp_path: Path) -> None:
    newer = snapshot_copy(stores["b"], tmp_path / "newer.db")
    conn = sqlite3.connect(str(newer))
    conn.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    conn.commit()
    conn.close()
    target = fresh_target(stores, tmp_path)
    before = dump(target)
    proc = l2l("merge", str(stores["a"]), str(newer), "--into", str(target))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"error: {newer}: store schema v{SCHEMA_VERSION + 1} is newer than this llm2llm "
                     f"(v{SCHEMA_VERSION}); upgrade llm2llm"]
    assert dump(target) == before
    fresh = l2l("merge", str(newer), "--into", str(tmp_path / "none.db"))
    assert fresh.returncode == 2 and not (tmp_path / "none.db").exists(), "no target is made for a refused merge"


def test_bad_sources_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    from engine.experiments.merge import merge_stores
    from models.errors import StoreError

    junk = tmp_path / "junk.db"
    junk.write_text("not a database", encoding="utf-8")
    plain = tmp_path / "plain.db"
    sqlite3.connect(str(plain)).execute("CREATE TABLE t (x)").connection.close()
    target = tmp_path / "target.db"
    Store(target).close()
    before = dump(target)
    for source, message in ((tmp_path / "missing.db", "no store here"), (junk, "not an llm2llm store"),
                            (plain, "not an llm2llm store (no schema_version table)"),
                            (target, "is the target store itself")):
        with pytest.raises(StoreError, match="^" + re.escape(f"{source}: {message}")):
            merge_stores([source], target)
    assert dump(target) == before


def test_an_older_store_merges_without_being_migrated_in_place(tmp_path: Path) -> None:
    import sqlite_utils

    from engine.experiments.merge import merge_stores
    from engine.store.db import MIGRATIONS

    old = tmp_path / "v3.db"
    db = sqlite_utils.Database(sqlite3.connect(str(old)))
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for version in (1, 2, 3):
        MIGRATIONS[version](db)
        db.table("schema_version").insert({"version": version})
    db.table("runs").insert({"id": 1, "name": "old", "created": "t", "status": "finished", "config": "{}"})
    db.table("examples").insert_all([{"id": 1, "run_id": 1, "split": "seed", "input": "a", "content_hash": "h1"},
                                     {"id": 2, "run_id": 1, "split": "synthetic", "input": "b", "parent_id": 1,
                                      "content_hash": "h2"}])
    db.table("sweeps").insert({"id": 1, "name": "old", "created": "t", "status": "finished", "doc": "{}",
                               "arms": json.dumps([{"name": "llm2llm", "overrides": [], "about": ""}]), "seed_sets": 1,
                               "digest": "d"})
    db.table("sweep_runs").insert({"sweep_id": 1, "arm": "llm2llm", "seed_set": 0, "run_id": 1, "overrides": "[]"})
    db.conn.commit()
    db.conn.close()
    raw = old.read_bytes()
    (report,) = merge_stores([old], tmp_path / "new.db")
    assert old.read_bytes() == raw, "the source was not migrated in place"
    assert report.merged == [(1, 1, "old")]
    st = Store(tmp_path / "new.db", create=False)
    (cell,) = st.sweep_runs(1)
    assert cell.seed_size == 0 and cell.run_id == 1
    child = st.examples(1, split="synthetic")[0]
    assert st.example(child.parent_id).input == "a"


def test_a_cell_whose_run_never_finished_takes_the_finished_run(stores: dict[str, Path], tmp_path: Path) -> None:
    """A sweep killed after creating a cell's run, before it ran: merging a store where that cell finished fills it."""
    from engine.experiments.merge import merge_stores

    target = snapshot_copy(stores["a"], tmp_path / "target.db")
    st = Store(target, create=False)
    with st.transaction():  # A's run 2 was created and never started: the plain cell as a kill leaves it
        st.add_sweep_run(1, "plain", 0, 2, ["loop.rounds=1"])
    st.close()
    (report,) = merge_stores([stores["b"]], target)
    assert report.cells_replaced == 1 and report.cells_present == 1 and report.cells_added == 0
    assert "1 replaced (their run there was unfinished)" in "\n".join(report.lines())
    st = Store(target, create=False)
    cells = {c.arm: c.run_id for c in st.sweep_runs(1)}
    assert st.run(cells["plain"]).status == "finished" and st.run(cells["plain"]).name == "tiny · plain · set 0"
    assert st.run(2).status == "created", "the unfinished run is left in the store, outside the sweep"
    assert st.sweep(1).status == "finished"


def test_runs_made_with_other_teacher_prompts_are_not_the_same_run() -> None:
    from engine.experiments.merge import fingerprint

    config, notes, hashes = {"data": {}, "loop": {"source": "teacher"}}, {}, {"seed": ["a"], "test": ["b"]}
    assert fingerprint(config, notes, hashes, "finished", "p1") != fingerprint(config, notes, hashes, "finished", "p2")
    assert fingerprint(config, notes, hashes, "finished", "p1") == fingerprint(config, notes, hashes, "finished", "p1")
    # runs from before the prompts' digest keep the fingerprint they always had
    assert fingerprint(config, notes, hashes, "finished", None) == fingerprint(config, notes, hashes, "finished")
