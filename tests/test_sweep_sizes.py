"""A sweep over seed sizes on real parts (tiny GGUF student and teacher, real SQLite): killed with kill -9, resumed,
nested seeds down the curve, matched arms per size, and the report's curve."""

from __future__ import annotations

from pathlib import Path

import pytest
import tomli_w
from conftest import tiny_config_doc
from test_sweep import l2l

from engine.store.db import Store

ARMS = ["llm2llm", "plain", "plain_tuned", "eda", "oracle"]
SIZES = [4, 8]


@pytest.fixture(scope="module")
def sized(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    """A 5-arm x 2-size x 1-set tiny sweep killed after its fourth cell, then continued by the same command."""
    folder = tmp_path_factory.mktemp("sized")
    doc = tiny_config_doc(tiny_gguf, folder / "l2l.db")
    doc["loop"]["score_test_every_round"] = False
    doc["data"].update(validation_size=4, test_size=4)
    doc["train"].update(eval_every=2, patience=2)
    doc["sweep"] = {"arms": ARMS, "seed_sets": 1, "seed_sizes": SIZES}
    config = folder / "sweep.toml"
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    first = l2l("sweep", str(config), fault="sweep:4:kill")
    assert first.returncode == -9, first.stderr[-3000:]
    store = Store(folder / "l2l.db", create=False)
    before = {(c.arm, c.seed_size): c.run_id for c in store.sweep_runs(1)}
    ended = {run_id: store.run(run_id).ended for run_id in before.values()}
    store.close()
    again = l2l("sweep", str(config))
    assert again.returncode == 0, again.stderr[-3000:]
    return folder / "l2l.db", {"before": before, "ended": ended, "stdout": again.stdout, "stderr": again.stderr}


def test_killed_multi_size_sweep_resumes_without_redoing_cells(sized: tuple[Path, dict]) -> None:
    path, info = sized
    store = Store(path, create=False)
    cells = {(c.arm, c.seed_size): c.run_id for c in store.sweep_runs(1)}
    assert set(cells) == {(a, n) for a in ARMS for n in SIZES} and len(store.runs()) == len(cells)
    assert len(info["before"]) == 4
    for cell, run_id in info["before"].items():
        assert cells[cell] == run_id and store.run(run_id).ended == info["ended"][run_id], f"{cell} was redone"
    assert store.sweep(1).status == "finished" and store.sweep(1).seed_sizes == SIZES
    assert store.sweep(1).judge["rows"] == 4, "the teacher judged the validation rows once"
    assert store.count("teacher_calls", purpose="judge") == 4, "the judge's calls are in the teacher cache"


def test_seed_sizes_nest_and_matched_arms_follow_their_size(sized: tuple[Path, dict]) -> None:
    store = Store(sized[0], create=False)
    cells = {(c.arm, c.seed_size): c.run_id for c in store.sweep_runs(1)}
    seeds = {cell: {e.input for e in store.examples(r, split="seed")} for cell, r in cells.items()}
    evaluation = {cell: [e.input for e in store.examples(r, split="test")] for cell, r in cells.items()}
    for arm in ARMS:
        assert len(seeds[(arm, 4)]) == 4 and len(seeds[(arm, 8)]) == 8
        assert seeds[(arm, 4)] < seeds[(arm, 8)], "the larger seed set holds the smaller"
        assert evaluation[(arm, 4)] == evaluation[(arm, 8)] == evaluation[("llm2llm", 4)]
    for n in SIZES:
        ref = cells[("llm2llm", n)]
        best = store.run(ref).best_round
        steps = store.round(ref, best).train["steps"]
        plain = store.round(cells[("plain", n)], 0).train
        assert plain["steps"] == steps and plain["selection"] == [], "plain: exactly the reference's steps, no selection"
        tuned = store.round(cells[("plain_tuned", n)], 0).train
        assert tuned["selection"], "plain_tuned chose its own length on validation"
        kept = [r.kept for r in store.rounds(ref) if r.kept is not None]
        for arm in ("eda", "oracle"):
            if kept:  # made for the reference's kind of targets
                assert store.run(cells[(arm, n)]).config["loop"]["targets"] == store.run(ref).config["loop"]["targets"]
            got = [r.kept for r in store.rounds(cells[(arm, n)]) if r.kept is not None]
            assert all(g <= k for g, k in zip(got, kept, strict=False)), f"{arm} keeps at most what llm2llm kept"
        for row in store.examples(cells[("oracle", n)], split="synthetic"):
            assert row.meta["origin"] == "oracle" and row.input not in seeds[("oracle", n)]


def test_report_prints_the_curve(sized: tuple[Path, dict]) -> None:
    out = l2l("report", "1", "--store", str(sized[0]))
    assert out.returncode == 0, out.stderr[-3000:]
    text = out.stdout
    assert "data-efficiency curve" in text and "n=4" in text and "n=8" in text
    assert "labels saved" in text and "oracle (ceiling)" in text and "kept/call" in text
    assert "teacher, judging 4 validation rows blind" in text
    # a matched baseline says which arm it is matched for: against any other arm, plain is not step-matched
    assert "plain has the optimizer steps of llm2llm: matched for llm2llm only" in " ".join(text.split())
    folder = sized[0].parent / "sweeps" / "sweep-1"
    header = (folder / "runs.csv").read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("arm,seed_size,seed_set")
    assert (folder / "report.png").stat().st_size > 1000


def test_report_fits_80_columns_when_piped(sized: tuple[Path, dict]) -> None:
    import os
    import subprocess
    import sys

    from test_sweep import REPO

    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-m", "l2l_tui.cli", "report", "1", "--store", str(sized[0])], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines)
    assert "against plain_tuned" in out.stdout and "data-efficiency curve" in out.stdout
