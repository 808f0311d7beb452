"""Does one thread escape a busy loop on the other core? A 1024x1024 fp32 matmul x40 idle, then beside a spinner pinned
to core 0, at 2 threads and at 1 (twice); with `pin`, the 1-thread runs beside the spinner are pinned to core 1.

    .venv/bin/python bench/thread_probe.py nopin
    .venv/bin/python bench/thread_probe.py pin
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import time

import torch


def spin(stop: mp.synchronize.Event) -> None:
    """Keep core 0 busy until told to stop."""
    os.sched_setaffinity(0, {0})
    while not stop.is_set():
        for _ in range(100_000):
            pass


def work(threads: int) -> float:
    """Seconds for 40 products of a 1024x1024 fp32 matrix with itself."""
    torch.set_num_threads(threads)
    a = torch.randn(1024, 1024)
    t0 = time.perf_counter()
    for _ in range(40):
        a @ a
    return time.perf_counter() - t0


def main() -> None:
    """Idle, then busy, for 2 threads and twice for 1 thread; print the ratios."""
    pin = len(sys.argv) > 1 and sys.argv[1] == "pin"
    for threads in (2, 1, 1):
        idle = work(threads)
        stop = mp.Event()
        spinner = mp.Process(target=spin, args=(stop,))
        spinner.start()
        time.sleep(1)
        if pin and threads == 1:
            os.sched_setaffinity(0, {1})
        busy = work(threads)
        stop.set()
        spinner.join()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
        print(f"pin={pin} threads {threads}: idle {idle:.2f} s, busy {busy:.2f} s, ratio {busy / idle:.2f}", flush=True)


if __name__ == "__main__":
    main()
