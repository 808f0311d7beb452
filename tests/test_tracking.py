"""MLflow tracking on real parts: tiny runs and a tiny sweep reported to a real MLflow file store (and to a real
`mlflow server` on loopback where one is installed), read back with MlflowClient; a server that is down costs one
warning line and no time; without MLflow, `tracking.mlflow` is refused before anything runs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from conftest import tiny_config_doc

from engine.config.schema import resolve
from engine.run.loop import Loop
from engine.run.runs import create_run, prepare
from engine.run.tracking import flatten_params
from engine.store.db import Store

mlflow = pytest.importorskip("mlflow", reason="the llm2llm[mlflow] extra")
os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")  # the test's own clients read the file store too

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tracked_run(tiny_gguf: Path, folder: Path, uri: str, **loop: Any) -> tuple[Store, int]:
    """A tiny run (in a store of its own) reporting to `uri`."""
    doc = tiny_config_doc(tiny_gguf, folder / "l2l.db", **loop)
    doc["tracking"] = {"mlflow": uri}
    cfg = resolve(doc)
    store = Store(cfg.store)
    return store, create_run(store, prepare(cfg))


def mlflow_id(store: Store, run_id: int) -> list[str]:
    """The MLflow run ids the store recorded for a run, oldest first."""
    rows = store.db.query("SELECT data FROM events WHERE run_id = ? AND kind = 'tracking' AND data IS NOT NULL ORDER BY id",
                          [run_id])
    return [json.loads(r["data"])["mlflow_run_id"] for r in rows]


def history(client: Any, run: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run, key))


@pytest.fixture(scope="module")
def finished(tiny_gguf: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The conftest's tiny 2-round run (teacher, filter, test every round), tracked to a file store."""
    folder = tmp_path_factory.mktemp("tracked")
    uri = (folder / "mlruns").as_uri()
    store, run_id = tracked_run(tiny_gguf, folder, uri)
    lines: list[tuple[str, str]] = []
    loop = Loop(store, run_id, on_log=lambda message, kind: lines.append((kind, message)))
    assert loop.run() == "finished"
    return {"store": store, "run_id": run_id, "uri": uri, "lines": lines, "seconds": loop.tracking.seconds}


def test_a_run_reports_its_config_rounds_best_round_and_adapter(finished: dict[str, Any]) -> None:
    store, run_id = finished["store"], finished["run_id"]
    client = mlflow.MlflowClient(finished["uri"])
    [run_mlflow] = mlflow_id(store, run_id)
    got = client.get_run(run_mlflow)
    assert got.info.status == "FINISHED" and got.info.run_name == f"tiny (run {run_id})"
    assert client.get_experiment(got.info.experiment_id).name == "tiny"
    # the resolved config as flattened params
    params = got.data.params
    assert params["train.epochs"] == "2.0" and params["loop.rounds"] == "2" and params["task.preset"] == "rotten_tomatoes"
    assert json.loads(params["lora.target_modules"]) == ["q_proj", "v_proj"] and params["teacher.seed"] == "null"
    assert params["tracking.mlflow"] == finished["uri"] and len(params) == len(flatten_params(store.run(run_id).config))
    assert all(len(v) <= 500 for v in params.values())
    # one point per round and finished phase, step = round index, values as in the store
    rounds = store.rounds(run_id)
    assert [r.idx for r in rounds] == [0, 1]
    for key in ("train_size", "seed_acc", "val_acc", "test_acc", "misses", "seconds/train", "seconds/eval"):
        want = [(r.idx, pytest.approx(getattr(r, key) if "/" not in key else r.record(key.split("/")[1])["seconds"]))
                for r in rounds]
        assert history(client, run_mlflow, key) == want, key
    filtered = [r for r in rounds if "filter" in r.phases]
    assert [r.idx for r in filtered] == [0]  # the last round stops after eval
    assert history(client, run_mlflow, "kept") == [(0, rounds[0].kept)]
    assert history(client, run_mlflow, "rejected") == [(0, rounds[0].rejected)]
    reasons = rounds[0].filter["reasons"]
    assert reasons and sum(reasons.values()) == rounds[0].rejected
    for reason, n in reasons.items():
        assert history(client, run_mlflow, f"rejected_by/{reason}") == [(0, n)]
    assert history(client, run_mlflow, "generated") == [(0, rounds[0].generated)]
    # the best round
    best = store.run(run_id).best_round
    assert got.data.tags["llm2llm.best_round"] == str(best)
    assert history(client, run_mlflow, "best_round") == [(best, best)]
    assert history(client, run_mlflow, "best/val_acc") == [(best, pytest.approx(store.round(run_id, best).val_acc))]
    assert got.data.tags["llm2llm.run_id"] == str(run_id) and got.data.tags["llm2llm.logged"] == "1:eval"
    # the chosen round's adapter folder and the config as artifacts
    top = {a.path for a in client.list_artifacts(run_mlflow)}
    assert top == {"config.json", f"round-{best}-adapter"}
    adapter = {Path(a.path).name for a in client.list_artifacts(run_mlflow, f"round-{best}-adapter")}
    assert adapter == {p.name for p in Path(store.round(run_id, best).adapter_path).iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors"} <= adapter
    config = json.loads(Path(client.download_artifacts(run_mlflow, "config.json")).read_text())
    assert config == store.run(run_id).config
    assert [m for k, m in finished["lines"] if k == "tracking"] == [
        f"tracking: MLflow run {run_mlflow} at {finished['uri']}"], "one line says where the run reports, no warning"


def test_tracking_is_execution_only(finished: dict[str, Any], tiny_run_store: tuple[Path, int]) -> None:
    """tracking.mlflow changes where results are reported, not what is computed (so it is in EXECUTION_ONLY): the
    tracked run equals the untracked one made from the same config, and a sweep takes either as the other's twin."""
    from engine.config.schema import EXECUTION_ONLY
    from engine.experiments.sweep import finished_twin

    assert ("tracking", "mlflow") in EXECUTION_ONLY
    plain_store, plain_id = Store(tiny_run_store[0], create=False), tiny_run_store[1]
    store, run_id = finished["store"], finished["run_id"]

    def results(st: Store, rid: int) -> dict[str, Any]:
        rounds = [(r.idx, r.train_size, r.misses, r.generated, r.kept, r.rejected, r.seed_acc,
                   r.val_acc, r.test_acc, round(r.train_loss, 6)) for r in st.rounds(rid)]
        examples = sorted((e.split, e.input, e.answer, e.status, e.reason or "") for e in st.examples(rid))
        return {"rounds": rounds, "examples": examples, "best": st.run(rid).best_round}

    assert results(store, run_id) == results(plain_store, plain_id)
    untracked = json.loads(json.dumps(store.run(run_id).config))
    untracked["tracking"]["mlflow"] = None
    assert finished_twin(store, prepare(resolve(untracked))) == run_id


def test_a_resumed_run_continues_the_same_mlflow_run(tiny_gguf: Path, tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    store, run_id = tracked_run(tiny_gguf, tmp_path, uri, rounds=1)

    def stop_after_training(message: str, kind: str) -> None:
        if message.startswith("round 0: trained"):
            store.update_run(run_id, stop_requested=1)

    assert Loop(store, run_id, on_log=stop_after_training).run() == "stopped"
    client = mlflow.MlflowClient(uri)
    [first] = mlflow_id(store, run_id)
    assert client.get_run(first).info.status == "KILLED"
    assert history(client, first, "train_size") == [(0, 8)] and history(client, first, "val_acc") == []
    assert Loop(store, run_id).run() == "finished"
    assert mlflow_id(store, run_id) == [first], "no second MLflow run"
    got = client.get_run(first)
    assert got.info.status == "FINISHED" and got.data.tags["llm2llm.logged"] == "0:eval"
    assert history(client, first, "train_size") == [(0, 8)], "the phase before the stop is not sent twice"
    assert history(client, first, "val_acc") == [(0, pytest.approx(store.round(run_id, 0).val_acc))]
    assert [e.name for e in client.search_experiments()].count("tiny") == 1
    assert len(client.search_runs([got.info.experiment_id])) == 1


def test_a_server_that_is_down_costs_one_warning_and_no_time(tiny_gguf: Path, tmp_path: Path) -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    store, run_id = tracked_run(tiny_gguf, tmp_path, uri, rounds=1)
    lines: list[tuple[str, str]] = []
    loop = Loop(store, run_id, on_log=lambda message, kind: lines.append((kind, message)))
    assert loop.run() == "finished"
    warnings = [m for k, m in lines if k == "tracking"]
    assert len(warnings) == 1 and warnings[0].startswith(f"tracking off for the rest of this run: reporting to MLflow "
                                                         f"at {uri} failed")
    events = [e for e in store.events(run_id) if e.kind == "tracking"]
    assert [(e.level, e.message) for e in events] == [("warning", warnings[0])]
    assert loop.tracking.seconds < 3.0, f"tracking took {loop.tracking.seconds:.1f}s"
    assert store.run(run_id).best_round == 0 and store.round(run_id, 0).val_acc is not None


def sweep_file(tiny_gguf: Path, folder: Path, uri: str) -> Path:
    doc = tiny_config_doc(tiny_gguf, folder / "l2l.db", rounds=1)
    doc["loop"]["score_test_every_round"] = False
    doc["data"].update(validation_size=4, test_size=4)  # 12 rows left for 8 seeds: seed sets differ
    doc["tracking"] = {"mlflow": uri}
    doc["sweep"] = {"arms": ["llm2llm", "paper"], "seed_sets": 1}
    path = folder / "sweep.toml"
    path.write_text(tomli_w.dumps(doc), encoding="utf-8")
    return path


def l2l(*args: str, block_mlflow: bool = False) -> subprocess.CompletedProcess[str]:
    """The CLI in a fresh interpreter (with `import mlflow` failing there, as for a user without the extra)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("L2L_FAULT", None)
    block = "sys.modules['mlflow'] = None; " if block_mlflow else ""
    code = f"import sys; {block}sys.argv = ['l2l', *sys.argv[1:]]; from l2l_tui.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=900)


def test_a_sweep_is_a_parent_run_with_a_child_per_cell(tiny_gguf: Path, tmp_path: Path) -> None:
    uri = (tmp_path / "mlruns").as_uri()
    proc = l2l("sweep", str(sweep_file(tiny_gguf, tmp_path, uri)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    store = Store(tmp_path / "l2l.db", create=False)
    cells = {c.arm: c.run_id for c in store.sweep_runs(1)}
    assert len(cells) == 2
    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny")
    found = client.search_runs([experiment.experiment_id])
    [parent] = [r for r in found if r.data.tags.get("llm2llm.sweep_id") == "1"]
    children = [r for r in found if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(found) == 3 and len(children) == 2
    assert parent.info.status == "FINISHED" and parent.info.run_name == "sweep 1 · tiny"
    assert parent.data.params["sweep.arms"] == "llm2llm,paper" and parent.data.params["sweep.seed_sets"] == "1"
    assert {(c.data.tags["llm2llm.arm"], c.data.tags["llm2llm.seed_set"], c.data.tags["llm2llm.run_id"])
            for c in children} == {(arm, "0", str(r)) for arm, r in cells.items()}
    for child in children:
        run_id = int(child.data.tags["llm2llm.run_id"])
        assert mlflow_id(store, run_id) == [child.info.run_id] and child.info.status == "FINISHED"
        assert child.data.metrics["val_acc"] == pytest.approx(store.round(run_id, 0).val_acc)
        assert child.data.metrics["test_acc"] == pytest.approx(store.round(run_id, 0).test_acc)
        assert child.data.params["teacher.show_student_answer"] == json.dumps(
            store.run(run_id).config["teacher"]["show_student_answer"])  # the arm's own settings
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert report == {"report/arms.csv", "report/runs.csv", "report/report.png"}
    shown = {"parent": parent.to_dictionary(), "children": [c.to_dictionary() for c in children]}
    (tmp_path / "sweep_runs.json").write_text(json.dumps(shown, indent=1, sort_keys=True, default=str))
    print(json.dumps(shown, indent=1, sort_keys=True, default=str))


def test_a_sweep_with_its_server_down_says_so_once(tiny_gguf: Path, tmp_path: Path) -> None:
    """The parent's first call fails: one line on the terminal, and each cell's run notes in the store that tracking
    is off (the failure came earlier in this process) without trying again."""
    uri = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = l2l("sweep", str(sweep_file(tiny_gguf, tmp_path, uri)))
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = " ".join((proc.stdout + proc.stderr).split())  # however the terminal wraps it
    assert said.count("tracking off") == 1, said
    assert f"tracking off for the rest of this run: reporting to MLflow at {uri} failed (adding a sweep cell)" in said
    store = Store(tmp_path / "l2l.db", create=False)
    assert store.sweep(1).status == "finished"
    for cell in store.sweep_runs(1):
        notes = [(e.level, e.message) for e in store.events(cell.run_id) if e.kind == "tracking"]
        assert len(notes) == 1 and notes[0][0] == "warning"
        assert notes[0][1].startswith(f"tracking off: MLflow at {uri} failed earlier in this process (MlflowException")
    assert time.monotonic() - started < 300


def test_without_mlflow_the_setting_is_refused_before_anything_runs(tiny_gguf: Path, tmp_path: Path) -> None:
    doc = tiny_config_doc(tiny_gguf, tmp_path / "l2l.db")
    doc["tracking"] = {"mlflow": (tmp_path / "mlruns").as_uri()}
    config = tmp_path / "run.toml"
    config.write_text(tomli_w.dumps(doc), encoding="utf-8")
    proc = l2l("run", str(config), block_mlflow=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    said = " ".join(proc.stderr.split())  # one message, however the terminal wraps it
    assert said == (f"error: {config}: tracking.mlflow: MLflow is not installed: pip install 'llm2llm[mlflow]' (or "
                    f"leave tracking.mlflow unset) (got '{doc['tracking']['mlflow']}')"), proc.stderr
    assert not (tmp_path / "l2l.db").exists() and not (tmp_path / "mlruns").exists()
    sweep = l2l("sweep", str(sweep_file(tiny_gguf, tmp_path, doc["tracking"]["mlflow"])), block_mlflow=True)
    assert sweep.returncode == 2 and "llm2llm[mlflow]" in sweep.stderr and not (tmp_path / "l2l.db").exists()


def test_params_are_flattened_and_long_values_cut() -> None:
    from engine.run.tracking import PARAM_VALUE_MAX, flatten_params

    flat = flatten_params({"a": {"b": 1, "c": [1, 2], "d": None, "e": {}}, "s": "x" * 5000, "t": True})
    assert flat["a.b"] == "1" and flat["a.c"] == "[1, 2]" and flat["a.d"] == "null" and flat["a.e"] == "{}"
    assert flat["t"] == "true" and len(flat["s"]) == PARAM_VALUE_MAX and flat["s"].endswith("see config.json)")
    assert flat["s"].startswith("x" * 400)


def server_command() -> list[str] | None:
    """An `mlflow server` to start: L2L_MLFLOW_SERVER (its executable) or this environment's, when it has the server's
    dependencies (the full `mlflow` package; the extra installs mlflow-skinny, the client)."""
    given = os.environ.get("L2L_MLFLOW_SERVER")
    if given:
        return [given]
    import importlib.util

    if all(importlib.util.find_spec(m) is not None for m in ("flask", "sqlalchemy", "alembic", "graphene")):
        return [sys.executable, "-m", "mlflow"]
    return None


def test_a_run_reports_to_a_real_server_on_loopback(tiny_gguf: Path, tmp_path: Path) -> None:
    command = server_command()
    if command is None:
        pytest.skip("no `mlflow server` here: install the full mlflow package, or set L2L_MLFLOW_SERVER")
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_ALLOW_FILE_STORE": "true", "MLFLOW_DISABLE_TELEMETRY": "true"}
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([*command, "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
                               "--backend-store-uri", (tmp_path / "backend").as_uri(),
                               "--artifacts-destination", (tmp_path / "artifacts").as_uri()],
                              cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import urllib.request

        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as reply:
                    if reply.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the server did not answer in 120 s"
            time.sleep(0.5)
        store, run_id = tracked_run(tiny_gguf, tmp_path, uri, rounds=1)
        lines: list[tuple[str, str]] = []
        assert Loop(store, run_id, on_log=lambda message, kind: lines.append((kind, message))).run() == "finished"
        assert [m for k, m in lines if k == "tracking" and "off" in m] == []
        client = mlflow.MlflowClient(uri)
        [run_mlflow] = mlflow_id(store, run_id)
        got = client.get_run(run_mlflow)
        assert got.info.status == "FINISHED" and got.data.params["loop.rounds"] == "1"
        assert history(client, run_mlflow, "val_acc") == [(0, pytest.approx(store.round(run_id, 0).val_acc))]
        assert {a.path for a in client.list_artifacts(run_mlflow)} == {"config.json", "round-0-adapter"}
        stored = list((tmp_path / "artifacts").rglob("adapter_model.safetensors"))
        assert len(stored) == 1, "the adapter went through the server to its artifact store"
    finally:  # the server and its workers: the process group the test started
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
