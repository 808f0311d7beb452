"""A mistyped command line gets typer's short usage line and the error, exit code 2, and no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
L2L = Path(sys.executable).with_name("l2l")  # the console script `pip install -e .` put next to this interpreter

CASES = {
    "unknown option": (["status", "--foo"], "No such option: --foo"),
    "unknown command": (["nosuchverb"], "No such command 'nosuchverb'"),
    "missing argument": (["run"], "Missing argument 'config'"),
    "option the command lacks": (["judge", "cfg.toml", "--store", "x.db"], "No such option: --store"),
    "value out of range": (["judge", "cfg.toml", "--limit", "0"], "Invalid value for '--limit'"),
}


@pytest.mark.parametrize("case", CASES)
def test_usage_error_is_a_short_message_and_exit_code_2(case: str, tmp_path: Path) -> None:
    args, message = CASES[case]
    assert L2L.is_file(), f"no console script at {L2L}: install the project with `make setup`"
    proc = subprocess.run([str(L2L), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"COLUMNS": "80", "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output
    assert "Traceback" not in output, output
    lines = output.strip().splitlines()
    assert len(lines) <= 5, output
    assert lines[0].startswith("Usage: l2l"), output
    assert message in output, output
    assert not list(tmp_path.iterdir()), "a usage error writes nothing"
