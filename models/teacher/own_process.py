"""The llama.cpp teacher in a process of its own, so that its CUDA libraries never share one with torch's.

On an H200 (torch 2.11+cu130, llama-cpp-python 0.3.36 built with CUDA 13), loading a GGUF with every layer offloaded
worked alone and crashed the process with SIGSEGV once torch had set up CUDA in it: the worker, which trains the
student before it calls the teacher, died at the first augment phase. The parent keeps the Teacher protocol; the
child holds a LlamaCppTeacher, and each reply crosses back as it finishes, so `on_reply` still commits it at once.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

from models.errors import TeacherProcessError
from models.teacher.base import OnReply, TeacherReply, TeacherRequest

_HEADER = struct.Struct(">Q")
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds `models/`


def _send(stream: IO[bytes], message: tuple[Any, ...]) -> None:
    """One length-prefixed pickle (llama.cpp's own prints go to stdout and stderr, never to this pipe)."""
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(data)) + data)
    stream.flush()


def _receive(stream: IO[bytes]) -> tuple[Any, ...] | None:
    """The next message, or None when the other side has gone."""
    header = stream.read(_HEADER.size)
    if len(header) < _HEADER.size:
        return None
    size = _HEADER.unpack(header)[0]
    data = stream.read(size)
    return pickle.loads(data) if len(data) == size else None


def _portable(err: BaseException) -> BaseException:
    """The exception itself when it survives pickling, else a RuntimeError with its text."""
    try:
        pickle.loads(pickle.dumps(err))
        return err
    except Exception:
        return RuntimeError(f"{type(err).__name__}: {err}")


def _death_note(code: int | None) -> str:
    """'exit 3' or 'signal 11 (SIGSEGV)' for a child's return code."""
    if code is not None and code < 0:
        try:
            return f"signal {-code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"signal {-code}"
    return f"exit {code}"


class ProcessTeacher:
    """A LlamaCppTeacher running in a child process; same constructor arguments, same Teacher protocol."""

    def __init__(self, model_path: Path, **kwargs: Any) -> None:
        self.model_path = Path(model_path)
        to_child_r, to_child_w = os.pipe()
        from_child_r, from_child_w = os.pipe()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (_PACKAGE_ROOT, os.environ.get("PYTHONPATH")) if p)}
        try:
            # stdout=2: llama.cpp's prints join the parent's stderr (the worker's log), never the terminal's stdout.
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "models.teacher.own_process", str(to_child_r), str(from_child_w)],
                pass_fds=(to_child_r, from_child_w), stdin=subprocess.DEVNULL, stdout=2, env=env)
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        self._to_child = os.fdopen(to_child_w, "wb")
        self._from_child = os.fdopen(from_child_r, "rb")
        try:
            self._send(("open", str(self.model_path), kwargs))
            ready = self._expect(("ready",), f"loading {self.model_path}")
        except BaseException:
            self._kill()
            raise
        self._identity: str = ready[1]
        self._info: dict[str, Any] = ready[2]

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._proc.pid

    # Teacher protocol -----------------------------------------------------------------------------
    def identity(self) -> str:
        """The child teacher's cache identity (model hash, n_ctx, decoding path)."""
        return self._identity

    def info(self) -> dict[str, Any]:
        """What llama.cpp set up in the child, and that it runs there."""
        return {**self._info, "process": f"own (pid {self.pid})"}

    def generate(self, requests: list[TeacherRequest], on_reply: OnReply | None = None) -> list[TeacherReply]:
        """Replies in request order; `on_reply` runs here, in this process, as each reply arrives."""
        if not requests:
            return []
        self._send(("generate", requests))
        doing = f"answering {len(requests)} requests"
        try:
            while (message := self._expect(("reply", "done", "error"), doing))[0] == "reply":
                if on_reply is not None:
                    on_reply(message[1])
        except TeacherProcessError:
            raise
        except BaseException:
            self._kill()  # the caller gave up mid-batch: the child would go on writing into a pipe nobody reads
            raise
        if message[0] == "error":
            raise message[1]  # raised by the teacher there, which is still ready for the next batch
        return list(message[1])

    def close(self) -> None:
        """Ask the child to free the model and exit; kill it if it does not within 30 s."""
        if self._proc.poll() is None:
            try:
                self._send(("close",))
                self._proc.wait(timeout=30)
            except (OSError, TeacherProcessError, subprocess.TimeoutExpired):
                self._kill()
        self._close_pipes()

    # plumbing -------------------------------------------------------------------------------------
    def _send(self, message: tuple[Any, ...]) -> None:
        try:
            _send(self._to_child, message)
        except (BrokenPipeError, ValueError) as err:
            raise self._died("taking a request") from err

    def _expect(self, kinds: tuple[str, ...], doing: str) -> tuple[Any, ...]:
        """The child's next message, which must be one of `kinds`; an error it sent is raised here, as it was raised
        there, unless the caller expects one."""
        message = _receive(self._from_child)
        if message is None:
            raise self._died(doing)
        if message[0] == "error" and "error" not in kinds:
            raise message[1]
        if message[0] not in kinds:
            raise TeacherProcessError(f"teacher process: expected {kinds}, got {message[0]!r}")
        return message

    def _died(self, doing: str) -> TeacherProcessError:
        try:
            code = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._kill()
            code = self._proc.returncode
        self._close_pipes()
        return TeacherProcessError(f"the teacher process for {self.model_path.name} died while {doing} "
                                   f"({_death_note(code)}); llama.cpp's own messages went to stderr (a run's worker.log)")

    def _kill(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._close_pipes()

    def _close_pipes(self) -> None:
        for stream in (self._to_child, self._from_child):
            try:
                stream.close()
            except OSError:
                pass


def _exit_with_parent() -> None:
    """End this process soon after its parent dies (kill -9 of the worker leaves no teacher holding the GPU)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def serve(from_parent: IO[bytes], to_parent: IO[bytes]) -> None:
    """The child's loop: open the teacher, then answer generate and close until the parent goes."""
    from models.teacher.llama_cpp import LlamaCppTeacher

    # Ctrl-C reaches the whole process group; the parent decides when to stop (at a safe point) and closes us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    opened = _receive(from_parent)
    if opened is None or opened[0] != "open":
        return
    try:
        teacher = LlamaCppTeacher(Path(opened[1]), **opened[2])
        _send(to_parent, ("ready", teacher.identity(), teacher.info()))
    except Exception as err:
        _send(to_parent, ("error", _portable(err)))
        return
    while (message := _receive(from_parent)) is not None:
        if message[0] == "close":
            break
        try:
            replies = teacher.generate(message[1], on_reply=lambda reply: _send(to_parent, ("reply", reply)))
            _send(to_parent, ("done", replies))
        except Exception as err:
            _send(to_parent, ("error", _portable(err)))
    teacher.close()


if __name__ == "__main__":
    _exit_with_parent()
    serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))
