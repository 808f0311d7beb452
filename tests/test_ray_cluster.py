"""`l2l sweep --ray ADDRESS` on a real Ray cluster of two worker nodes on this machine (ray.cluster_utils.Cluster):
a 2-arm x 2-seed-set sweep runs its cells on both nodes, a worker killed mid-augment (two teacher calls paid) is run
again without paying those two again, and the sweep ends with every cell once and the same rounds, kept examples and
accuracies as the same sweep run here without Ray; a second sweep whose calls the store already holds pays the
teacher for none of them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import tomli_w
from conftest import tiny_config_doc

from engine.store.db import Store

REPO = Path(__file__).resolve().parents[1]


def sweep(config: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The `l2l sweep` driver in a process of its own (with `--ray ADDRESS` in `extra`: connected to the cluster)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("L2L_FAULT")}  # faults are for the workers
    code = "import sys\nfrom l2l_tui.cli import main\nsys.argv = ['l2l', *sys.argv[1:]]\nmain()"
    return subprocess.run([sys.executable, "-c", code, "sweep", str(config), *extra],
                          env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=900)


def test_two_nodes_share_the_cells_a_dead_worker_is_run_again_and_no_call_is_paid_twice(
        tiny_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")
    doc["loop"]["score_test_every_round"] = False
    doc["data"].update(validation_size=4, test_size=4)
    doc["teacher"]["parallel"] = 1  # a sequential teacher: a retried cell's later replies are the texts a local run gets
    doc["sweep"] = {"arms": ["llm2llm", "plain"], "seed_sets": 2}  # the llm2llm cells wait on nothing: one per node
    config = tmp_path / "sweep.toml"
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")

    # the nodes' workers inherit this environment: this checkout's code, and the first worker to have two of its
    # augmentation calls committed dies
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    monkeypatch.setenv("RAY_worker_register_timeout_seconds", "600")
    monkeypatch.setenv("L2L_FAULT", "augment:0:reply2:kill")
    monkeypatch.setenv("L2L_FAULT_ONCE", str(tmp_path / "killed"))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    try:
        for _ in range(2):
            cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()

        first = sweep(config, "--ray", cluster.address)
        assert first.returncode == 0, first.stderr[-4000:]
        assert (tmp_path / "killed").exists(), "no worker was killed"
        done = re.findall(r"· (llm2llm|plain) · run \d+ .*· on \S+ \(node (\w+)\) · (\d+) teacher calls paid",
                          first.stderr)
        assert len(done) == 4 and len({node for _, node, _ in done}) == 2, first.stderr[-4000:]
        assert all((int(paid) > 0) == (arm == "llm2llm") for arm, _, paid in done)
        store = Store(tmp_path / "l2l.db", create=False)
        assert store.sweep(1).status == "finished"
        cells = {(c.arm, c.seed_set): c.run_id for c in store.sweep_runs(1)}
        assert sorted(cells) == [("llm2llm", 0), ("llm2llm", 1), ("plain", 0), ("plain", 1)], "every cell once"
        assert len(store.runs()) == 4 and all(r.status == "finished" for r in store.runs())
        calls = store.count("teacher_calls")
        judged = store.db.execute("SELECT COUNT(*) FROM teacher_calls WHERE run_id IS NULL").fetchone()[0]
        assert calls == judged + sum(int(paid) for *_, paid in done) + 2, \
            "the two calls the killed worker paid reached the store once, and its retry did not pay them again"

        # the same sweep here without Ray: the same rounds, kept examples and accuracies, and the same calls asked
        local = sweep(config, "--store", str(tmp_path / "local.db"))
        assert local.returncode == 0, local.stderr[-4000:]
        there = Store(tmp_path / "local.db", create=False)
        numbers = "SELECT idx, train_size, seed_acc, val_acc, test_acc, misses, kept, train_loss FROM rounds WHERE run_id = ?"
        kept = "SELECT input, target FROM examples WHERE run_id = ? AND split = 'synthetic' AND status = 'kept' ORDER BY id"
        local_cells = {(c.arm, c.seed_set): c.run_id for c in there.sweep_runs(1)}
        assert set(local_cells) == set(cells)
        for cell, run_id in cells.items():
            for sql in (numbers, kept):
                assert store.db.execute(sql, [run_id]).fetchall() == there.db.execute(sql, [local_cells[cell]]).fetchall()
        keys = "SELECT key FROM teacher_calls ORDER BY key"
        assert store.db.execute(keys).fetchall() == there.db.execute(keys).fetchall(), "no call paid twice, none missing"
        there.close()
        store.close()

        # another experiment by name only: not a finished twin, so it runs again, asking exactly the cached calls
        again = sweep(config, "--ray", cluster.address, "--set", "name=tiny-again")
        assert again.returncode == 0, again.stderr[-4000:]
        paid = re.findall(r"· (\d+) teacher calls paid", again.stderr)
        assert paid == ["0"] * 4, again.stderr[-4000:]
        store = Store(tmp_path / "l2l.db", create=False)
        assert len(store.runs()) == 8 and store.count("teacher_calls") == calls
        store.close()
    finally:
        cluster.shutdown()
