"""llama.cpp jobs in a fresh process: the value comes back, the job's own error comes back, a crash is one clear error,
and export and doctor never load llama.cpp where torch runs (on CUDA that load crashed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from models.errors import FreshProcessError, ModelFileError
from models.fresh_process import in_fresh_process

REPO = Path(__file__).resolve().parents[1]


def pid_and_torch() -> tuple[int, bool]:
    """The job's pid, and whether torch was imported there (it must start bare)."""
    return os.getpid(), "torch" in sys.modules


def refuse(name: str) -> None:
    raise ModelFileError(f"{name}: not a GGUF")


def segfault() -> None:
    os.kill(os.getpid(), signal.SIGSEGV)


def test_the_job_runs_in_another_bare_interpreter_and_its_value_comes_back() -> None:
    import torch  # noqa: F401  (the parent has torch; the job's interpreter must not inherit it)

    pid, has_torch = in_fresh_process("testing", pid_and_torch)
    assert pid != os.getpid() and has_torch is False


def test_the_jobs_own_error_is_raised_here_unchanged() -> None:
    with pytest.raises(ModelFileError, match="x.gguf: not a GGUF"):
        in_fresh_process("testing", refuse, "x.gguf")


def test_a_crash_in_the_job_is_one_clear_error() -> None:
    with pytest.raises(FreshProcessError, match="llama.cpp died while quantizing x.gguf"):
        in_fresh_process("quantizing x.gguf", segfault)


@pytest.mark.parametrize("call", [
    "from models.device import llama_gpu_offload; llama_gpu_offload()",
    "from models.export_gguf import quantize; quantize(Path(sys.argv[1]), Path(sys.argv[2]), 'q8_0', 1)",
])
def test_doctor_and_export_leave_llama_cpp_out_of_this_process(call: str, tiny_gguf: Path, tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    script = f"import sys\nfrom pathlib import Path\n{call}\nprint('llama_cpp' in sys.modules)\n"
    proc = subprocess.run([sys.executable, "-c", script, str(tiny_gguf), str(tmp_path / "q.gguf")], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split()[-1] == "False"


def test_a_job_starts_from_inside_a_textual_app_whose_stderr_has_no_file() -> None:
    """Textual replaces sys.stderr by a capture whose fileno() is -1; the first spawn of a process (the resource tracker
    starts then) once failed there with "bad value(s) in fds_to_keep", and so did the app's model-files export."""
    script = (
        "import os, sys\n"
        "class Capture:\n"
        "    def write(self, text): return len(text)\n"
        "    def flush(self): pass\n"
        "    def fileno(self): return -1  # what textual.app._PrintCapture returns\n"
        "sys.stderr = Capture()\n"
        "from models.fresh_process import in_fresh_process\n"
        "print(in_fresh_process('testing', os.getpid) != os.getpid(), type(sys.stderr).__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["True", "Capture"]  # the job ran, and the app's capture is back in place


def native_import_order() -> list[str]:
    """Which of llama.cpp's bindings and numpy the job's interpreter imported, in import order."""
    return [name for name in sys.modules if name in ("llama_cpp.llama_cpp", "numpy")]


def test_a_job_loads_llama_cpp_before_numpy() -> None:
    pytest.importorskip("llama_cpp")
    assert in_fresh_process("testing", native_import_order) == ["llama_cpp.llama_cpp", "numpy"]
