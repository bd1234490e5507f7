"""Presets: ready-made configs in presets/*.yaml, and the current config shown as the exact YAML and
as the equivalent command line (`python app.py train presets/X.yaml --set key=value ...`)."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any, Optional

import yaml

from engine import config as C
from engine.config import llamafactory
from engine.runs.paths import PRESETS_DIR, REPO

# Fields that describe where this app keeps runs rather than the training itself.
LOCAL_FIELDS = ("output.run_name",)


def names(folder: Path = PRESETS_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def path_of(name: str, folder: Path = PRESETS_DIR) -> Path:
    return folder / f"{name}.yaml"


def load(name: str, folder: Path = PRESETS_DIR) -> C.RunConfig:
    """A preset's config. Raises ConfigError naming every problem in the file."""
    return C.load(path_of(name, folder), check_files=False)


def save(cfg: C.RunConfig, name: str, folder: Path = PRESETS_DIR) -> Path:
    """Write the current config as presets/<name>.yaml (without a run name, so each run gets its own)."""
    name = name.strip().removesuffix(".yaml")
    if not C.RUN_NAME_RE.match(name):
        raise C.ConfigError([f"preset name: {name!r} may only hold letters, digits, '.', '_' and '-'"])
    cfg = C.replace(cfg, "output.run_name", "")
    cfg = C.replace(cfg, "output.saves_dir", C.OutputConfig().saves_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = path_of(name, folder)
    C.save(cfg, path)
    return path


def _flat(cfg: C.RunConfig) -> dict[str, Any]:
    return {key: C.get(cfg, key) for key, *_ in C.iter_fields()}


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def set_args(cfg: C.RunConfig, base: C.RunConfig) -> list[str]:
    """`key=value` for every field where cfg differs from base; values written as YAML, as --set reads them."""
    now, was = _flat(cfg), _flat(base)
    out = []
    for key, value in now.items():
        if value != was[key]:
            text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
            text = text.removesuffix("\n...").removesuffix("...").strip()
            out.append(f"{key}={text}")
    return out


def from_file(path: str | Path) -> tuple[C.RunConfig, list[str]]:
    """A config file's run config: a Whetstone YAML as it is, a LLaMA-Factory one converted (with its warnings and
    notes as the second value). Raises ConfigError naming every problem (for theirs: the keys not mapped)."""
    conv = llamafactory.read(path)
    if conv is None:
        return C.load(path, check_files=False), []
    if conv.errors:
        raise C.ConfigError([f"LLaMA-Factory config: {e}" for e in conv.errors])
    return C.from_dict(conv.config, check_files=False), ["converted from a LLaMA-Factory config", *conv.warnings,
                                                          *conv.notes]


def cli_command(cfg: C.RunConfig, source: Optional[str]) -> str:
    """The headless command that runs exactly this config."""
    base = C.RunConfig()
    file = None
    if source and Path(source).is_file():
        try:
            base = from_file(source)[0]
            file = _shown_path(Path(source))
        except C.ConfigError:
            base = C.RunConfig()
    if file is None:
        return ("# No YAML file behind these settings yet: save them as a preset, then\n"
                "python app.py train presets/NAME.yaml")
    parts = ["python", "app.py", "train", file]
    for arg in set_args(cfg, base):
        parts += ["--set", arg]
    return " ".join(shlex.quote(p) for p in parts)
