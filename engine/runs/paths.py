"""Where things live: the repository's folders (resolved from this file rather than the working
directory, so a relative data folder never turns up empty, a LLaMA Board complaint), the model cache,
the saves folder, hub ids, loopback addresses, and paths no file system accepts."""
from __future__ import annotations

import os
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA_DIR = REPO / "data"
PRESETS_DIR = REPO / "presets"


# A Hugging Face hub id: org/name (models and datasets alike).
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Addresses that reach this machine only (serving the UI, a one-machine rendezvous).
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def cache_dir() -> Path:
    """Where converted models are cached (WHETSTONE_CACHE overrides)."""
    return Path(os.environ.get("WHETSTONE_CACHE", Path.home() / ".cache" / "whetstone")).expanduser()


def saves_dir(configured: str = "saves") -> Path:
    """The runs folder: relative values are taken relative to the repository."""
    p = Path(configured).expanduser()
    return p if p.is_absolute() else REPO / p


# Limits of Linux file systems: a name part over 255 bytes or a path over 4096 bytes makes every stat()
# raise "File name too long" (pathlib's exists()/is_dir() do not swallow it), and a NUL byte ends a C string.
NAME_MAX, PATH_MAX = 255, 4096


def unusable_path(text: str) -> str | None:
    """Why ``text`` cannot name anything on disk, as a sentence that quotes it (shortened), or None. Checked
    before any stat, so a fuzzed or pasted value gets words instead of an OSError."""
    shown = f"{text[:60]!r}{'...' if len(text) > 60 else ''}"
    if "\x00" in text:
        return f"{shown} contains a NUL character; no file or folder can have it in its name"
    raw = text.encode("utf-8", "surrogatepass")
    if len(raw) > PATH_MAX:
        return f"{shown} is {len(raw)} bytes long; paths stop at {PATH_MAX}: give a shorter path"
    longest = max((len(part) for part in raw.split(b"/")), default=0)
    if longest > NAME_MAX:
        return (f"{shown} has a name part {longest} bytes long; file systems stop at {NAME_MAX}: "
                "give a shorter path")
    return None
