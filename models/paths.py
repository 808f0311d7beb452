"""Where llm2llm keeps its data (store, models); folders are created on demand, never on import."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP_NAME = "llm2llm"


def l2l_home() -> Path:
    """The llm2llm data folder: $L2L_HOME, else the platform's user data folder (created if missing)."""
    env = os.environ.get("L2L_HOME")
    path = Path(env).expanduser() if env else Path(platformdirs.user_data_dir(APP_NAME))
    path.mkdir(parents=True, exist_ok=True)
    return path


def model_cache() -> Path:
    """The model folder: $L2L_MODEL_CACHE, else <user cache dir>/models (created if missing)."""
    env = os.environ.get("L2L_MODEL_CACHE")
    path = Path(env).expanduser() if env else Path(platformdirs.user_cache_dir(APP_NAME)) / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_store() -> Path:
    """The default SQLite store: <l2l_home>/l2l.db."""
    return l2l_home() / "l2l.db"
