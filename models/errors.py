"""User-facing errors (a leaf module: engine, models and the app all raise them): each says what is wrong and where."""

from __future__ import annotations


class L2LError(Exception):
    """Base of errors shown to the user as one clear message (no traceback)."""


class ConfigError(L2LError):
    """A config key is unknown, mistyped or out of range."""


class DataError(L2LError):
    """A data file or row is unusable; the message names file, row and field."""


class ModelNotFoundError(L2LError):
    """A model file or folder is missing; the message names the path to provide."""


class ModelFileError(ModelNotFoundError):
    """A model file or folder is there but unusable (truncated, not GGUF, files missing, untrainable architecture)."""


class TeacherProcessError(L2LError):
    """The teacher's own process died (a crash in llama.cpp) or answered out of turn."""


class FreshProcessError(L2LError):
    """A llama.cpp job sent to a fresh process (away from torch's CUDA) died there before it answered."""


class ChecksumError(L2LError):
    """An assembled model file does not match its catalog sha256."""


class StoreError(L2LError):
    """The store is missing, locked, or holds no such run."""
