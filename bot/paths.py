"""Where storybot keeps its files: one home folder per user, or ``$STORYBOT_HOME``.

The home holds the config written by ``storybot init``, the database, the health file of a running
bot and the models ``storybot model download`` saves. Relative paths in a config file are read
from the config file's folder, so a bot started from any directory finds the same stories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

HOME_ENV = "STORYBOT_HOME"
CONFIG_NAME = "config.toml"
DATABASE_NAME = "storybot.db"
HEALTH_NAME = "health.json"


def home(environ: Mapping[str, str] | None = None) -> Path:
    """``$STORYBOT_HOME``, else the per-user data folder (``~/.local/share/storybot`` on Linux)."""
    environ = os.environ if environ is None else environ
    if environ.get(HOME_ENV):
        return Path(environ[HOME_ENV]).expanduser()
    import platformdirs

    return platformdirs.user_data_path("storybot")


def resolve(path: str | Path, base: Path) -> Path:
    """``path`` with ``~`` expanded, and read from ``base`` when it is relative."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else base / path


def looks_like_path(name: str) -> bool:
    """Whether a model name names a folder (``./x``, ``~/x``, ``/x``, deeper than ``org/name``)
    rather than a hub id (``gpt2``, ``org/name``)."""
    return (
        name.startswith(("/", "./", "../", "~", ".\\"))
        or Path(name).is_absolute()
        or name.count("/") > 1
    )


def model_label(name: str) -> str:
    """A model's name to show members: a hub id as it is, a folder by its last name only (the
    host's paths are theirs)."""
    if not looks_like_path(name):
        return name
    return name.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]
