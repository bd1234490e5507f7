"""Dataset names: bundled demo sets in data/, uploads, local files and folders, LLaMA-Factory
dataset_info.json entries, hub ids; what each resolves to and why one cannot be used. Light: reads no
rows (engine.data.sources does)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import yaml

from engine.data.files import SUFFIXES as FILE_SUFFIXES
from engine.runs.paths import DATA_DIR, HUB_ID_RE, saves_dir, unusable_path


def bundled(include_eval: bool = False) -> dict[str, Path]:
    """Bundled dataset name -> file (data/<name>.json[l]); data/*_eval files are eval sets, listed only
    with include_eval (they resolve by name either way, e.g. in data.eval_datasets)."""
    out = {}
    if DATA_DIR.is_dir():
        for p in sorted(DATA_DIR.iterdir()):
            if p.is_file() and p.suffix in FILE_SUFFIXES and (include_eval or not p.stem.endswith("_eval")):
                out[p.stem] = p
    return out


INFO_FILE = "dataset_info.json"


def info_entry(name: str, root: Path | None = None) -> tuple[Path, str] | None:
    """(folder, entry) for a 'folder:entry' name pointing into a LLaMA-Factory dataset_info.json."""
    folder, sep, entry = name.rpartition(":")
    if not sep or not folder or not entry:
        return None
    p = _as_path(folder, root)
    return (p, entry) if (p / INFO_FILE).is_file() else None


def resolve(name: str, root: Path | None = None) -> tuple[str, str]:
    """('file'|'folder'|'info'|'hub', location) for a dataset name. Raises ValueError with the reason."""
    err = problem(name, root)
    if err:
        raise ValueError(err)
    if info_entry(name, root):
        return "info", name
    b = bundled(include_eval=True)
    if name in b:
        return "file", str(b[name])
    p = _as_path(name, root)
    if p.is_dir():
        return "folder", str(p)
    if p.is_file():
        return "file", str(p)
    return "hub", name


def _as_path(name: str, root: Path | None) -> Path:
    p = Path(name).expanduser()
    if not p.is_absolute() and root is not None:
        p = root / p
    return p


def problem(name: str, root: Path | None = None) -> str | None:
    if not isinstance(name, str) or not name.strip():
        return "empty dataset name; pick a bundled dataset, a file or a hub id"
    bad = unusable_path(name)
    if bad:
        return bad
    if name in bundled(include_eval=True) or info_entry(name, root):
        return None
    p = _as_path(name, root)
    if p.is_dir():
        return None
    if p.is_file():
        if p.suffix.lower() not in FILE_SUFFIXES:
            return f"{name!r} has an unsupported type {p.suffix!r}; use .json, .jsonl, .csv or .parquet"
        return None
    if p.suffix.lower() in FILE_SUFFIXES or name.startswith(("/", "./", "../", "~")):
        return f"no file at {name!r}; check the path (relative paths are taken from the current folder)"
    if HUB_ID_RE.match(name):
        return None
    names = ", ".join(bundled()) or "none"
    return f"{name!r} is not a bundled dataset ({names}), an existing file, or a hub id like 'org/name'"


def uploads_dir() -> Path:
    """Where files uploaded in the browser are kept (WHETSTONE_UPLOADS overrides data/uploads)."""
    return Path(os.environ.get("WHETSTONE_UPLOADS", DATA_DIR / "uploads")).expanduser()


def recent(saves: Path, limit: int = 10) -> list[str]:
    """Datasets named by the newest runs' configs in saves/ (most recent first)."""
    out: list[str] = []
    if not saves.is_dir():
        return out
    configs = sorted(saves.glob("*/config.yaml"), key=lambda p: p.stat().st_mtime, reverse=True)
    for c in configs[:50]:
        try:
            names = (yaml.safe_load(c.read_text(encoding="utf-8")) or {}).get("data", {}).get("datasets") or []
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        for n in names:
            if isinstance(n, str) and n not in out and problem(n) is None:
                out.append(n)
    return out[:limit]


def discovered(saves: Path | None = None) -> list[str]:
    """Every dataset choice for the dropdown: bundled, uploaded, entries of a dataset_info.json in data/,
    and those recently used."""
    out = list(bundled())
    up = uploads_dir()
    if up.is_dir():
        out += [str(p) for p in sorted(up.iterdir()) if p.is_file() and p.suffix.lower() in FILE_SUFFIXES
                and not p.stem.endswith("_eval")]  # held-out files (the identity helper's) are not training sets
    info = DATA_DIR / INFO_FILE
    if info.is_file():
        try:
            out += [f"{DATA_DIR}:{k}" for k in json.loads(info.read_text(encoding="utf-8"))]
        except (OSError, ValueError, AttributeError):
            pass
    if saves is None:
        saves = saves_dir(os.environ.get("WHETSTONE_SAVES", "saves"))
    out += [n for n in recent(saves) if n not in out]
    return out
