"""Sweeps on real parts: tiny GGUF student and teacher, real SQLite; resume after kill -9, the report's numbers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from conftest import tiny_config_doc

from engine.store.db import Store

REPO = Path(__file__).resolve().parents[1]
ARMS = ["plain", "one_shot", "random", "paper", "llm2llm"]


def sweep_config(tiny_gguf: Path, folder: Path) -> Path:
    doc = tiny_config_doc(tiny_gguf, folder / "l2l.db")
    doc["loop"]["score_test_every_round"] = False
    doc["data"].update(validation_size=4, test_size=4)  # 12 rows left for 8 seeds: seed sets differ
    doc["sweep"] = {"arms": ARMS, "seed_sets": 2, "define": {"k1": ["loop.examples_per_miss=1"]}}
    path = folder / "sweep.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def l2l(*args: str, fault: str | None = None, sigint_ignored: bool = False) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("L2L_FAULT", None)
    if fault:
        env["L2L_FAULT"] = fault
    # as a shell starts a command with `&`: SIGINT ignored until a handler takes it
    start = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
    return subprocess.run([sys.executable, "-m", "l2l_tui.cli", *args], env=env, capture_output=True, text=True,
                          timeout=900, preexec_fn=start)


@pytest.fixture(scope="module")
def swept(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A 5-arm, 2-seed-set tiny sweep killed with kill -9 after its third run, then continued by the same command."""
    folder = tmp_path_factory.mktemp("sweep")
    config = sweep_config(tiny_gguf, folder)
    first = l2l("sweep", str(config), fault="sweep:3:kill")
    assert first.returncode == -9, first.stderr[-3000:]
    store = Store(folder / "l2l.db", create=False)
    before = {(c.arm, c.seed_set): c.run_id for c in store.sweep_runs(1)}
    assert len(before) == 3
    ended = {run_id: store.run(run_id).ended for run_id in before.values()}
    calls = store.count("teacher_calls")
    store.close()
    again = l2l("sweep", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    return folder / "l2l.db", {"before": before, "ended": ended, "calls": calls, "stdout": again.stdout,
                               "stderr": again.stderr}


def test_killed_sweep_continues_without_redoing_finished_runs(swept: tuple[Path, dict]) -> None:
    path, info = swept
    store = Store(path, create=False)
    cells = {(c.arm, c.seed_set): c.run_id for c in store.sweep_runs(1)}
    assert len(cells) == len(ARMS) * 2 == len(store.runs()), "one run per cell, none made twice"
    for cell, run_id in info["before"].items():
        assert cells[cell] == run_id and store.run(run_id).ended == info["ended"][run_id], f"{cell} was redone"
    assert store.sweep(1).status == "finished"
    assert all(store.run(r).status == "finished" for r in cells.values())
    assert "(already finished)" in info["stderr"] and info["stderr"].count("[10/10]") == 1


def test_arms_and_seed_sets_are_what_they_claim(swept: tuple[Path, dict]) -> None:
    from engine.config.schema import RunConfig

    store = Store(swept[0], create=False)
    cells = {(c.arm, c.seed_set): c.run_id for c in store.sweep_runs(1)}
    cfg = {cell: RunConfig.model_validate(store.run(r).config) for cell, r in cells.items()}
    inputs = {cell: {split: [e.input for e in store.examples(r, split=split)] for split in ("seed", "validation", "test")}
              for cell, r in cells.items()}
    for arm in ARMS:  # validation and test stay fixed; the seed draw and the training seed change
        assert inputs[(arm, 0)]["validation"] == inputs[(arm, 1)]["validation"]
        assert inputs[(arm, 0)]["test"] == inputs[(arm, 1)]["test"]
        assert inputs[(arm, 0)]["seed"] != inputs[(arm, 1)]["seed"]
        assert cfg[(arm, 1)].seed == cfg[(arm, 0)].seed + 1
        assert inputs[(arm, 0)]["seed"] == inputs[("llm2llm", 0)]["seed"], "every arm of a seed set has the same seeds"
    for s in (0, 1):
        ref = cells[("llm2llm", s)]
        best = store.run(ref).best_round
        steps = store.round(ref, best).train["steps"]
        plain = cells[("plain", s)]
        assert store.round(plain, 0).train["steps"] == steps and len(store.rounds(plain)) == 1
        asked = sum(r.augment.get("examples_requested", 0) for r in store.rounds(ref))
        one_shot = store.rounds(cells[("one_shot", s)])
        if asked:
            seeds = store.count("examples", run_id=cells[("one_shot", s)], split="seed")
            augment = one_shot[0].augment
            assert augment["examples_requested"] == asked and augment["requests"] == min(seeds, asked)
        paper = cfg[("paper", s)]
        assert paper.loop.examples_per_miss == 1 and not paper.teacher.show_student_answer
        r0 = store.round(cells[("random", s)], 0)
        if "augment" in r0.phases:
            assert r0.augment["requests"] == r0.misses, "as many calls as misses, random targets"
        # the test split is scored once, at the chosen round
        for arm in ARMS:
            run = cells[(arm, s)]
            scored = [r.idx for r in store.rounds(run) if r.test_acc is not None]
            assert scored == [store.run(run).best_round]


def test_the_teacher_never_sees_the_students_answer_in_the_paper_arm(swept: tuple[Path, dict]) -> None:
    import json

    store = Store(swept[0], create=False)
    cells = {(c.arm, c.seed_set): c.run_id for c in store.sweep_runs(1)}
    prompts = lambda run: [json.loads(c["prompt"])[-1]["content"] for c in store.db.query(  # noqa: E731
        "SELECT prompt FROM teacher_calls WHERE run_id = ? AND purpose = 'write'", [run])]  # verification is blind
    assert all("The student answered" not in p for p in prompts(cells[("paper", 0)]))
    assert all("The student answered" in p for p in prompts(cells[("llm2llm", 0)]))


def test_report_numbers_match_the_store(swept: tuple[Path, dict]) -> None:
    from rich.console import Console

    from engine.reports.sweep_report import arm_rows, gather, paired, render, write_files

    store = Store(swept[0], create=False)
    report = gather(store, 1)
    rows = {r["arm"]: r for r in arm_rows(report)}
    cells = {(c.arm, c.seed_set): c.run_id for c in store.sweep_runs(1)}
    for arm in ARMS:
        tests = [store.round(cells[(arm, s)], store.run(cells[(arm, s)]).best_round).test_acc for s in (0, 1)]
        assert rows[arm]["test"].mean == pytest.approx(np.mean(tests))
        assert rows[arm]["test"].sd == pytest.approx(np.std(tests, ddof=1))
        kept = [store.count("examples", run_id=cells[(arm, s)], split="synthetic", status="kept") for s in (0, 1)]
        assert rows[arm]["kept"].mean == pytest.approx(np.mean(kept))
    # the pooled paired difference is the mean of per-example differences over both seed sets
    p = paired(report, "llm2llm", "plain")
    assert p is not None and p.n_examples == 8
    diffs = []
    for s in (0, 1):
        a, b = (report.of_arm(arm)[s].test_correct for arm in ("llm2llm", "plain"))
        diffs += [a[k] - b[k] for k in a]
        assert p.per_set[s] == pytest.approx(np.mean([a[k] - b[k] for k in a]))
    assert p.delta == pytest.approx(np.mean(diffs)) and p.ci_low <= p.delta <= p.ci_high
    assert rows["plain"]["vs_plain"] is None and rows["llm2llm"]["vs_paper"] is not None
    files = write_files(report, list(rows.values()), swept[0].parent / "report")
    assert all(path.stat().st_size > 0 for path in files.values())
    assert files["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = Console(width=200, record=True)
    console.print(render(report, list(rows.values()), files))
    text = console.export_text()
    assert "vs plain" in text and "vs paper" in text and "k1" not in text
    assert "sweep 1" in swept[1]["stdout"], "the sweep prints its report when it finishes"


def test_report_pairs_with_the_arms_asked_for(swept: tuple[Path, dict], tmp_path: Path) -> None:
    """Ablations are read against llm2llm: `--against llm2llm` adds that pairing to the table and the CSV."""
    import shutil

    shutil.copy(swept[0], tmp_path / "l2l.db")
    proc = l2l("report", "1", "--store", str(tmp_path / "l2l.db"), "--against", "llm2llm")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vs llm2llm" in proc.stdout
    header = (tmp_path / "sweeps" / "sweep-1" / "arms.csv").read_text().splitlines()[0]
    assert "delta_llm2llm" in header and "delta_plain" in header
    bad = l2l("report", "1", "--store", str(tmp_path / "l2l.db"), "--against", "nope")
    assert bad.returncode == 2 and "sweep 1 has no arm nope" in bad.stderr


def test_a_user_arm_and_bad_arms(tiny_gguf: Path, tmp_path: Path) -> None:
    from engine.config.schema import SweepConfig
    from engine.experiments.arms import resolve_arms
    from models.errors import ConfigError

    arms = resolve_arms(SweepConfig(define={"k1": ["loop.examples_per_miss=1"]}), ["plain", "k1", "llm2llm"])
    assert [a.name for a in arms] == ["llm2llm", "k1", "plain"] and arms[2].reference == "llm2llm"
    with pytest.raises(ConfigError, match="unknown arm 'nope'"):
        resolve_arms(SweepConfig(), ["nope"])
    with pytest.raises(ConfigError, match="built-in"):
        resolve_arms(SweepConfig(define={"paper": []}))
    bad = l2l("sweep", str(sweep_config(tiny_gguf, tmp_path)), "--arms", "plain,unknown")
    assert bad.returncode == 2 and "unknown arm 'unknown'" in bad.stderr and not (tmp_path / "l2l.db").exists()


def test_a_store_given_on_the_command_line_is_relative_to_the_working_directory(
        tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.experiments.sweep import plan_sweep

    (tmp_path / "configs").mkdir()
    config = sweep_config(tiny_gguf, tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    plan = plan_sweep(config, [], ["plain"], 1, Path("out/l2l.db"))
    assert plan.doc["store"] == str(tmp_path / "out" / "l2l.db")  # not configs/out/l2l.db
    assert plan_sweep(config, [], ["plain"], 1, None).doc["store"] == str(tmp_path / "configs" / "l2l.db")


def test_a_finished_run_with_the_same_config_is_shared_not_run_again(swept: tuple[Path, dict], tmp_path: Path,
                                                                      tiny_gguf: Path) -> None:
    import shutil

    shutil.copytree(swept[0].parent, tmp_path / "copy")
    config = sweep_config(tiny_gguf, tmp_path / "copy")  # the same sweep file, now pointing at the copied store
    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    moved = tmp_path / "elsewhere" / "pool.jsonl"  # the data moved with its project: the same texts, another path
    moved.parent.mkdir()
    shutil.copy(doc["data"]["pool"], moved)
    doc["data"]["pool"] = str(moved)
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    store = Store(tmp_path / "copy" / "l2l.db", create=False)
    before = len(store.runs())
    paper = {c.seed_set: c.run_id for c in store.sweep_runs(1) if c.arm == "paper"}
    # runs made before teacher.isolate existed (an execution-only setting) are still twins
    store.db.execute("UPDATE runs SET config = json_remove(config, '$.teacher.isolate')")
    store.close()
    proc = l2l("sweep", str(config), "--arms", "paper")
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = Store(tmp_path / "copy" / "l2l.db", create=False)
    assert len(store.runs()) == before, "no run was made again"
    assert {c.seed_set: c.run_id for c in store.sweep_runs(2)} == paper
    assert store.sweep(2).status == "finished"


def test_a_signal_between_two_runs_stops_the_sweep_there(tiny_gguf: Path, tmp_path: Path) -> None:
    """SIGINT after the first run, in a process started with SIGINT ignored (a background job): the sweep stops
    before the second run, as stopped, and continues from there (it used to go on as if nothing came)."""
    config = sweep_config(tiny_gguf, tmp_path)
    doc = tomllib.loads(config.read_text(encoding="utf-8"))
    doc["sweep"] = {"arms": ["paper"], "seed_sets": 2}
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    first = l2l("sweep", str(config), fault="sweep:1:int", sigint_ignored=True)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "SIGINT between runs: stopped" in first.stderr + first.stdout
    store = Store(tmp_path / "l2l.db", create=False)
    assert store.sweep(1).status == "stopped" and len(store.sweep_runs(1)) == 1
    store.close()
    again = l2l("sweep", "--resume", "1", "--store", str(tmp_path / "l2l.db"))
    assert again.returncode == 0, again.stderr[-3000:]
    store = Store(tmp_path / "l2l.db", create=False)
    assert store.sweep(1).status == "finished" and len(store.sweep_runs(1)) == 2
