"""Where Waluigi Desk keeps its data.

One function decides the data root: ``--home DIR`` (which sets ``WALUIGI_DESK_HOME``), else the
``WALUIGI_DESK_HOME`` environment variable, else platformdirs' user data folder. Everything the
app writes (database, crash reports, user models) lives below it, so tests only need to point
``WALUIGI_DESK_HOME`` at a temp dir.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "WALUIGI_DESK_HOME"
REPO_ROOT = Path(__file__).resolve().parent.parent


def data_root() -> Path:
    env = os.environ.get(ENV_HOME)
    if env:
        root = Path(env).expanduser()
    else:
        import platformdirs

        root = Path(platformdirs.user_data_dir("waluigi-desk", appauthor=False))
    root.mkdir(parents=True, exist_ok=True)
    return root


def set_home(path: str | os.PathLike[str]) -> Path:
    """Point the data root at ``path`` for this process and its children."""
    p = Path(path).expanduser().resolve()
    os.environ[ENV_HOME] = str(p)
    p.mkdir(parents=True, exist_ok=True)
    return p


def database_path() -> Path:
    return data_root() / "waluigi.db"


def user_models_dir() -> Path:
    d = data_root() / "models"
    d.mkdir(parents=True, exist_ok=True)
    return d


def crash_dir() -> Path:
    d = data_root() / "crash-reports"
    d.mkdir(parents=True, exist_ok=True)
    return d


def resources_dir() -> Path:
    """``resources/`` in a checkout; inside a frozen build, next to the package."""
    import sys

    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return REPO_ROOT / "resources"


def repo_models_dir() -> Path:
    return REPO_ROOT / "models"
