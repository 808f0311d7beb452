"""The CLI turns bad input into one clear message, exit code 2, and nothing on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def _l2l(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "l2l_tui.cli", *args], capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())},
                          cwd=Path(__file__).resolve().parents[1])


def test_bad_label_names_file_line_and_allowed_values_and_writes_nothing(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(f'[task]\npreset = "rotten_tomatoes"\n[data]\nseed = "{FIXTURES / "bad_label.jsonl"}"\n'
                      f'validation = "{FIXTURES / "rotten_tomatoes_20.jsonl"}"\ntest = "{FIXTURES / "rotten_tomatoes_20.jsonl"}"\n')
    store = tmp_path / "store" / "l2l.db"
    proc = _l2l("run", str(config), "--store", str(store))
    assert proc.returncode == 2
    message = " ".join(proc.stderr.split())
    assert "bad_label.jsonl:line 2" in message and "'neutral'" in message and "[negative, positive]" in message
    assert not store.parent.exists()


def test_unknown_override_key_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text('[task]\npreset = "rotten_tomatoes"\n')
    proc = _l2l("run", str(config), "--set", "train.epochz=2")
    assert proc.returncode == 2 and "train.epochz: unknown key" in proc.stderr


def test_sweep_help_shows_the_table_name_rich_would_eat() -> None:
    proc = _l2l("sweep", "--help")
    assert proc.returncode == 0 and "with a [sweep] table" in " ".join(proc.stdout.split())


def test_cli_progress_echoes_a_sample_of_teacher_examples_per_phase() -> None:
    from rich.console import Console

    from engine.reports.cli_progress import TEACHER_SAMPLE, CliProgress

    console = Console(width=60, record=True)
    progress = CliProgress(console)
    for round_idx in range(2):
        progress.log(f"round {round_idx}: asking the teacher", "phase")
        for i in range(10):
            progress.log('{"text": "' + "a long teacher example " * 5 + f'{i}", "label": "positive"}}', "teacher")
    lines = console.export_text().splitlines()
    assert sum(line.startswith("  teacher: {") for line in lines) == 2 * TEACHER_SAMPLE
    assert sum("every example is in the store" in line for line in lines) == 2
    assert all(len(line) <= 60 for line in lines), "teacher examples are cut to one line"


def fixed_store(path: Path) -> Path:
    """A store with three runs written from fixed rows (no model run), the longest names a sweep makes."""
    import json

    from engine.config.schema import resolve
    from engine.store.db import Store

    store = Store(path)
    cfg = resolve({"task": {"preset": "rotten_tomatoes"}})
    for i, (arm, status) in enumerate((("llm2llm", "finished"), ("one_shot", "failed"), ("plain", "stopped"))):
        with store.transaction():
            run_id = store.create_run(f"sentiment-32 · {arm} · set {i}", cfg.to_json(), cfg.digest(), 0, {}, {}, {})
            store.update_run(run_id, status=status, ended=store.run(run_id).created)
            store.upsert_round(run_id, 0, phase="done", val_acc=0.815, phases=json.dumps({}))
    return path


def test_status_fits_80_and_120_columns_without_cutting_words(tmp_path: Path) -> None:
    from rich.console import Console

    from engine.reports.run_report import runs_table
    from engine.store.db import Store

    store = Store(fixed_store(tmp_path / "l2l.db"))
    for width, headers in ((80, ["id", "name", "status", "rounds", "val %", "took"]),
                           (120, ["id", "name", "status", "task", "rounds", "val %", "started", "took"])):
        console = Console(width=width, record=True)
        console.print(runs_table(store, width=width))
        text = console.export_text()
        lines = text.splitlines()
        assert max(len(line.rstrip()) for line in lines) <= width
        assert "…" not in text, "no column is cut short"
        header = next(line for line in lines if "┃ id" in line)
        assert [h.strip() for h in header.strip("┃").split("┃")] == headers
        for word in ("finished", "failed", "stopped", "81.5", "sentiment-32 · one_shot · set 1"):
            assert word in text, (width, word)


def test_a_runs_rounds_fit_80_columns_and_show_each_phase_from_110(tmp_path: Path) -> None:
    from rich.console import Console

    from engine.reports.run_report import run_summary
    from engine.store.db import Store

    store = Store(fixed_store(tmp_path / "l2l.db"))
    run_id = max(r.id for r in store.runs() if r.status == "finished")
    for width, phases in ((80, ["time"]), (120, ["train", "eval", "teacher", "filter"])):
        console = Console(width=width, record=True)
        console.print(run_summary(store, run_id, width=width))
        text = console.export_text()
        assert max(len(line.rstrip()) for line in text.splitlines()) <= width
        header = next(line for line in text.splitlines() if "┃ round" in line)
        assert "…" not in header, "no column header is cut short"
        assert [h.strip() for h in header.strip("┃").split("┃")][7:] == phases


def test_export_lists_each_file_with_size_and_sha256(store_copy: tuple[Path, int], tmp_path: Path) -> None:
    import hashlib

    store, run_id = store_copy
    out = tmp_path / "exported"
    proc = _l2l("export", str(run_id), "--out", str(out), "--only", "data,adapter", "--store", str(store))
    assert proc.returncode == 0, proc.stderr
    data = out / f"run-{run_id}-train.prompt-completion.jsonl"
    digest = hashlib.sha256(data.read_bytes()).hexdigest()
    text = " ".join(proc.stdout.split())
    assert data.name in text and digest in text and f"{data.stat().st_size:,}" in text
    assert (out / f"run-{run_id}-train.chat.jsonl").is_file() and (out / f"run-{run_id}-adapter").is_dir()
    assert not (out / f"run-{run_id}-merged").exists()  # only the parts asked for


def test_doctor_with_a_config_checks_its_teacher_endpoint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "c.toml"
    config.write_text(f'[teacher]\nbackend = "openai"\nbase_url = "http://127.0.0.1:{port}/v1"\nmodel = "m"\n')
    proc = _l2l("doctor", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "teacher endpoint" in proc.stdout and "does not answer" in " ".join(proc.stdout.split())


def test_status_and_data_export_start_without_the_ml_stack(tmp_path: Path) -> None:
    """Reading commands stay quick as new processes: importing torch and pandas cost `l2l status` 3 s."""
    from fixed_run import build_run_store

    path, run_id = build_run_store(tmp_path / "l2l.db")
    heavy = ("torch", "transformers", "peft", "pandas", "llama_cpp")
    code = (f"import atexit, sys\natexit.register(lambda: print('HEAVY', [m for m in {heavy!r} if m in sys.modules]))\n"
            "from l2l_tui.cli import main\nmain()")
    for args in (["status"], ["status", str(run_id)], ["export", str(run_id), "--only", "data", "--out", str(tmp_path / "out")]):
        proc = subprocess.run([sys.executable, "-c", code, *args, "--store", str(path)], capture_output=True, text=True,
                              timeout=300, cwd=Path(__file__).resolve().parents[1], env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
        assert proc.returncode == 0, proc.stderr
        assert "HEAVY []" in proc.stdout, (args, proc.stdout[-300:])
