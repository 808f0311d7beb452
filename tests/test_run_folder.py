"""Two stores in one folder never share a run folder or a sweep report folder: each store keeps its own."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_config_doc

from engine.config.schema import resolve
from engine.reports.sweep_report import report_folder
from engine.run.failures import worker_log
from engine.run.runs import create_run, prepare
from engine.store.db import Store


def test_runs_of_two_stores_in_one_folder_get_folders_of_their_own(tiny_gguf: Path, tmp_path: Path) -> None:
    folders = {}
    for name in ("l2l.db", "pool.db", "mawps.db"):
        cfg = resolve(tiny_config_doc(tiny_gguf, tmp_path / name))
        store = Store(cfg.store)
        run_id = create_run(store, prepare(cfg))
        folders[name] = (Path(store.run(run_id).splits["workdir"]), worker_log(store.path, run_id))
        store.close()
    assert folders["l2l.db"][0] == tmp_path / "runs" / "1", "the default store keeps its runs/ folder"
    assert folders["pool.db"][0] == tmp_path / "pool-runs" / "1"
    assert len({workdir for workdir, _ in folders.values()}) == 3
    assert all(log.parent == workdir for workdir, log in folders.values())
    store = Store(tmp_path / "pool.db", create=False)
    assert report_folder(store, 1) == tmp_path / "pool-sweeps" / "sweep-1"
    store.close()
