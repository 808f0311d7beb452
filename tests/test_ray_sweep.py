"""`l2l sweep CONFIG --ray local` on real parts: each cell runs as a Ray task into a store of its own and comes back
merged into the driver's store, the matched arm after its reference; run again, nothing is sent to Ray."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import tomli_w
from conftest import tiny_config_doc

from engine.store.db import Store

REPO = Path(__file__).resolve().parents[1]


def l2l(*args: str, prelude: str = "", fault: str | None = None) -> subprocess.CompletedProcess[str]:
    """The `l2l` command in a process of its own, after `prelude` (Python run first); L2L_FAULT reaches Ray's workers."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    # Ray gives a starting worker 60 s to register; on a busy 2-core box a niced worker took longer once and the
    # sweep hung until Ray gave up on it
    env.setdefault("RAY_worker_register_timeout_seconds", "600")
    env.pop("L2L_FAULT", None)
    if fault:
        env["L2L_FAULT"] = fault
    code = f"{prelude}\nimport sys\nfrom l2l_tui.cli import main\nsys.argv = ['l2l', *sys.argv[1:]]\nmain()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=900)


def sweep_config(tiny_gguf: Path, folder: Path) -> Path:
    doc = tiny_config_doc(tiny_gguf, folder / "l2l.db")
    doc["loop"]["score_test_every_round"] = False
    doc["data"].update(validation_size=4, test_size=4)
    doc["sweep"] = {"arms": ["llm2llm", "plain"], "seed_sets": 1}
    path = folder / "sweep.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def test_cells_run_as_ray_tasks_and_are_merged(tiny_gguf: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    config = sweep_config(tiny_gguf, tmp_path)
    proc = l2l("sweep", str(config), "--ray", "local")
    assert proc.returncode == 0, proc.stderr[-4000:]
    host = os.uname().nodename
    assert proc.stderr.count(f"· on {host}") == 2, proc.stderr[-4000:]
    store = Store(tmp_path / "l2l.db", create=False)
    sweep = store.sweep(1)
    assert sweep.status == "finished"
    cells = {c.arm: c.run_id for c in store.sweep_runs(1)}
    assert set(cells) == {"llm2llm", "plain"} and len(store.runs()) == 2
    runs = {arm: store.run(run_id) for arm, run_id in cells.items()}
    assert all(r.status == "finished" and r.host == host for r in runs.values())
    # the matched arm was sent after its reference came back: plain trains as many steps as llm2llm's chosen round
    ref = cells["llm2llm"]
    steps = store.round(ref, runs["llm2llm"].best_round).train["steps"]
    assert store.round(cells["plain"], 0).train["steps"] == steps
    assert f"train.steps={steps}" in store.sweep_runs(1)[-1].overrides
    # the worker's rows came along: lineage, predictions, teacher calls; adapters stay in the cell's folder
    children = [e for e in store.examples(ref, split="synthetic") if e.parent_id is not None]
    assert children and all(store.example(e.parent_id).run_id == ref for e in children)
    assert store.count("predictions", run_id=ref) > 0 and store.count("teacher_calls", run_id=ref) > 0
    workdir = Path(runs["llm2llm"].splits["workdir"])
    assert workdir.is_relative_to(Path(os.environ["L2L_HOME"]) / "ray-cells" / sweep.digest)

    # the same sweep run here, without Ray, gives the same numbers and asks the teacher the same calls
    local = l2l("sweep", str(config), "--store", str(tmp_path / "local.db"))
    assert local.returncode == 0, local.stderr[-4000:]
    there = Store(tmp_path / "local.db", create=False)
    numbers = "SELECT idx, train_size, seed_acc, val_acc, test_acc, misses, kept, train_loss FROM rounds WHERE run_id = ?"
    local_cells = {c.arm: c.run_id for c in there.sweep_runs(1)}
    for arm, run_id in cells.items():
        assert store.db.execute(numbers, [run_id]).fetchall() == there.db.execute(numbers, [local_cells[arm]]).fetchall()
    keys = "SELECT key FROM teacher_calls ORDER BY key"
    assert store.db.execute(keys).fetchall() == there.db.execute(keys).fetchall()
    there.close()
    store.close()

    again = l2l("sweep", str(config), "--ray", "local")
    assert again.returncode == 0, again.stderr[-4000:]
    assert again.stderr.count("(already finished)") == 2 and "· on " not in again.stderr
    store = Store(tmp_path / "l2l.db", create=False)
    assert len(store.runs()) == 2, "no run was made again"
    assert {c.arm: c.run_id for c in store.sweep_runs(2)} == cells and store.sweep(2).status == "finished"


@pytest.mark.parametrize("asked", ["option", "config"])
def test_without_ray_the_sweep_is_refused_in_one_line(asked: str, tiny_gguf: Path, tmp_path: Path) -> None:
    """Asked for with --ray, or by the config's [sweep] ray."""
    config = sweep_config(tiny_gguf, tmp_path)
    if asked == "config":
        doc = tomllib.loads(config.read_text(encoding="utf-8"))
        doc["sweep"]["ray"] = "auto"
        config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    args = ["--ray", "local"] if asked == "option" else []
    proc = l2l("sweep", str(config), *args, prelude="import sys; sys.modules['ray'] = None")
    assert proc.returncode == 2
    where = "--ray" if asked == "option" else f"{config}: sweep.ray"
    assert proc.stderr.strip().splitlines() == [
        f"error: {where}: Ray is not installed here; install it with pip install 'llm2llm[ray]'"]
    assert not (tmp_path / "l2l.db").exists()


def test_a_worker_killed_mid_cell_fails_the_sweep_and_it_resumes(tiny_gguf: Path, tmp_path: Path) -> None:
    """kill -9 of the Ray worker in the reference cell's training, on every try Ray makes: nothing is filed, the
    matched cell is never sent, the sweep says failed in one line; --resume with Ray runs both cells."""
    pytest.importorskip("ray")
    config = sweep_config(tiny_gguf, tmp_path)
    killed = l2l("sweep", str(config), "--ray", "local", fault="train:0:kill")
    assert killed.returncode == 2, killed.stderr[-4000:]
    (line,) = [x for x in killed.stderr.splitlines() if x.startswith("error:")]
    assert line.startswith("error: sweep 1: 1 cells failed on Ray: [1/2] set 0 · llm2llm: WorkerCrashedError")
    store = Store(tmp_path / "l2l.db", create=False)
    assert store.sweep(1).status == "failed" and store.runs() == [] and store.sweep_runs(1) == []
    store.close()
    again = l2l("sweep", "--resume", "1", "--store", str(tmp_path / "l2l.db"), "--ray", "local")
    assert again.returncode == 0, again.stderr[-4000:]
    store = Store(tmp_path / "l2l.db", create=False)
    assert store.sweep(1).status == "finished" and len(store.sweep_runs(1)) == 2
    assert all(r.status == "finished" for r in store.runs())
