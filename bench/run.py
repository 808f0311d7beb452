"""Run every benchmark (teacher, evaluation, training) in turn; each prints its ratio against its own baseline."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
BENCHES = ["bench_teacher.py", "bench_eval.py", "bench_train.py"]


def main(argv: list[str]) -> int:
    """Run the benches named in argv (default: all) and report the machine first."""
    import os

    print(f"machine: {platform.node()} · {platform.processor() or platform.machine()} · {os.cpu_count()} cores · "
          f"python {platform.python_version()}", flush=True)
    failed = 0
    for name in argv or BENCHES:
        print(f"\n=== {name} ===", flush=True)
        failed += subprocess.call([sys.executable, str(HERE / name)]) != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
