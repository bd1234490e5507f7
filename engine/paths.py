"""Where things live, resolved from this file rather than the working directory, so a relative
data folder never turns up empty (a LLaMA Board complaint)."""
from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"
PRESETS_DIR = REPO / "presets"


def cache_dir() -> Path:
    """Where converted models are cached (WHETSTONE_CACHE overrides)."""
    return Path(os.environ.get("WHETSTONE_CACHE", Path.home() / ".cache" / "whetstone")).expanduser()


def saves_dir(configured: str = "saves") -> Path:
    """The runs folder: relative values are taken relative to the repository."""
    p = Path(configured).expanduser()
    return p if p.is_absolute() else REPO / p
