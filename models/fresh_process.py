"""One llama.cpp job in a fresh interpreter, so that llama.cpp never loads a model where torch has set up CUDA.

On an H200 (torch 2.11+cu130, llama-cpp-python 0.3.36 built with CUDA 13) a model load crashed the process with
SIGSEGV once torch had touched CUDA in it, even with no layers offloaded. Exports merge and check on torch, then
convert, quantize and answer with llama.cpp: each llama.cpp step runs here. The teacher, which answers many batches,
has its own long-lived process instead (models/teacher/own_process.py).

Each job's interpreter loads llama_cpp before it reads the job, so llama.cpp's native libraries come before numpy's:
on an H200 every full GGUF load in a CUDA build died (SIGSEGV) in processes that had imported numpy first, and lived
in those that had not (bench/RESULTS.md, "GPU"; not yet verified there with this order).
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, TypeVar

from models.errors import FreshProcessError

T = TypeVar("T")


def _start_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (once per process) with a real stderr to hand its child.

    Inside a Textual app sys.stderr is a print capture whose fileno() is -1, and the tracker passes that to its child
    as is: the first spawn there failed with "bad value(s) in fds_to_keep" (the app's model-files export did).
    """
    from multiprocessing import resource_tracker

    captured = sys.stderr
    try:
        usable = captured is not None and captured.fileno() >= 0
    except (AttributeError, OSError, ValueError):
        usable = False
    if not usable:
        sys.stderr = sys.__stderr__
    try:
        resource_tracker.ensure_running()
    finally:
        sys.stderr = captured


def _load_llama_cpp_first() -> None:
    """The job interpreter's initializer: llama_cpp before the job's own imports (numpy among them)."""
    try:
        import llama_cpp  # noqa: F401
    except ImportError:  # the job's own import of it then says what is missing
        pass


def in_fresh_process(doing: str, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a spawned interpreter; its exceptions are raised here, its death is one FreshProcessError."""
    _start_resource_tracker()
    # spawn, not fork: a forked child would inherit the parent's CUDA state, the very thing to stay away from.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_load_llama_cpp_first) as pool:
        try:
            return pool.submit(fn, *args).result()
        except BrokenProcessPool as err:
            raise FreshProcessError(f"llama.cpp died while {doing} (in a process of its own; its messages went to "
                                    f"this command's stderr)") from err
