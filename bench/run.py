"""Run every benchmark in turn, then print one table of their ratios and absolute figures with the machine."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from summary import parse  # noqa: E402


def teacher_args() -> list[str]:
    """Bench the demo's real teacher when it is installed (the random model otherwise)."""
    from models.catalog import installed_path

    path = installed_path("qwen2.5-coder-1.5b-instruct")
    return ["--model", str(path), "--n", "32", "--parallel", "8"] if path else []


BENCHES = {
    "bench_teacher.py": teacher_args,
    "bench_eval.py": lambda: [],
    "bench_train.py": lambda: [],
    "bench_demo_run.py": lambda: [],
}


def machine() -> str:
    """One line naming this machine: CPU, cores, memory, GPU if any."""
    import psutil
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
            f"{psutil.virtual_memory().total / 2**30:.0f} GB · {gpu} · torch {torch.__version__} · python {platform.python_version()}")


def main(argv: list[str]) -> int:
    """Run the benches named in argv (default: all), echo their output, then the summary table."""
    where = machine()
    print(f"machine: {where}", flush=True)
    rows: list[list[str]] = []
    failed = []
    for name in argv or list(BENCHES):
        print(f"\n=== {name} ===", flush=True)
        proc = subprocess.Popen([sys.executable, str(HERE / name), *BENCHES[name]()], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        for line in proc.stdout:
            fields = parse(line)
            if fields is None:
                print(line, end="", flush=True)
            else:
                rows.append(fields)
        if proc.wait() != 0:
            failed.append(name)
    print(f"\n## Summary ({where})\n")
    print("| claim | baseline | llm2llm | ratio | bar |\n|---|---|---|---|---|")
    for claim, baseline, candidate, ratio, bar in rows:
        print(f"| {claim} | {baseline} | {candidate} | {ratio}{'×' if ratio != '-' else ''} | {bar} |")
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
