"""Adapter folders that appear whole or not at all, and the resolved config saved beside them."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from engine.config.schema import RunConfig
from engine.store.db import private_dir


def staging_folder(adapter_dir: Path) -> Path:
    """A fresh folder beside the adapter's to save into; leftovers of saves a crash interrupted are removed first."""
    private_dir(adapter_dir.parent)
    for leftover in adapter_dir.parent.glob(f".{adapter_dir.name}-*"):
        shutil.rmtree(leftover, ignore_errors=True)
    return adapter_dir.with_name(f".{adapter_dir.name}-{os.getpid()}.tmp")


def publish(staging: Path, adapter_dir: Path) -> None:
    """Make a finished save the adapter folder at once (rename): a half-written folder never carries its name."""
    for path in staging.rglob("*"):
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    if adapter_dir.exists():  # an earlier attempt's, renamed before it could be committed
        old = adapter_dir.with_name(f".{adapter_dir.name}-{os.getpid()}.old")
        os.rename(adapter_dir, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(staging, adapter_dir)
    fsync_dir(adapter_dir.parent)


def fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_resolved_config(folder: Path, cfg: RunConfig) -> None:
    """The resolved config beside every checkpoint (litgpt-style), replaced atomically."""
    private_dir(folder)
    tmp = folder / f".config.toml.{os.getpid()}.tmp"
    tmp.write_text(cfg.to_toml(), encoding="utf-8")
    os.replace(tmp, folder / "config.toml")
