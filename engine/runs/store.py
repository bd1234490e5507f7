"""Runs found in a saves folder: each run folder summarised from its events (found again after an app
restart), its checkpoints, its final weights and config, and safe lookups of a run by name. Light.

A run folder holds config.yaml, events.jsonl, stdout.log, worker.json (the pid of the worker while it
lives), checkpoints/, and at the end adapter/ or model/.
"""
from __future__ import annotations

import copy
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from engine.runs.events import EVENTS_FILE, EventReader
from engine.runs.processes import worker_alive, worker_info
from engine.runs.progress import Progress


@dataclass
class RunSummary:
    name: str
    path: Path
    model: str = ""
    method: str = ""
    stage: str = ""
    status: str = "unknown"
    step: int = 0
    total_steps: Optional[int] = None
    final_loss: Optional[float] = None
    started: Optional[float] = None
    updated: Optional[float] = None
    reason: str = ""
    alive: bool = False        # a worker process of this run lives
    going: bool = False        # ... and has not said its last word (engine.runs.progress.Progress.going)
    checkpoints: list[str] = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)


def checkpoints(run_dir: Path) -> list[str]:
    """Complete checkpoints, oldest first (a temporary half-written one never counts)."""
    d = Path(run_dir) / "checkpoints"
    if not d.is_dir():
        return []
    found = []
    for p in d.iterdir():
        if p.is_dir() and p.name.startswith("checkpoint-") and p.name[11:].isdigit() and \
                (p / "trainer_state.json").is_file():
            found.append(p)
    return [str(p) for p in sorted(found, key=lambda p: int(p.name[11:]))]


# The config file beside adapter weights: peft's, the bottleneck adapters', P-Tuning v2's (engine.modeling).
ADAPTER_CONFIG_FILES = ("adapter_config.json", "bottleneck_config.json", "deep_prompt_config.json")


def weights_dir(run_dir: str | Path, checkpoint: str = "") -> Optional[Path]:
    """The folder holding a run's weights to chat with or export: adapter/, model/ or checkpoints/<name>/."""
    run_dir = Path(run_dir)
    if checkpoint:
        p = run_dir / "checkpoints" / checkpoint
        ok = any((p / f).is_file() for f in ADAPTER_CONFIG_FILES + ("config.json",))
        return p if ok else None
    for name in ("adapter", "model"):
        p = run_dir / name
        if p.is_dir():
            return p
    return None


def run_config(run_dir: Path):
    """The run's config as it trained: the copy saved with the final weights, else config.yaml."""
    from engine import config as C
    run_dir = Path(run_dir)
    for p in (run_dir / "adapter" / "whetstone_config.yaml", run_dir / "model" / "whetstone_config.yaml",
              run_dir / "config.yaml"):
        if p.is_file():
            return C.load(p, check_files=False)
    raise FileNotFoundError(f"{run_dir} has no config.yaml")


def summarize(run_dir: Path) -> Optional[RunSummary]:
    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return None
    s = RunSummary(name=run_dir.name, path=run_dir)
    try:
        cfg = yaml.safe_load(cfg_path.read_text()) or {}
        s.model = str(cfg.get("model", {}).get("name_or_path", ""))
        s.method = str(cfg.get("method", {}).get("finetuning", ""))
        s.stage = str(cfg.get("method", {}).get("stage", ""))
    except (OSError, yaml.YAMLError, AttributeError):
        pass
    events = run_dir / EVENTS_FILE
    prog = s.progress = folded(events)
    s.alive = worker_alive(run_dir)
    s.going = prog.going(s.alive, (worker_info(run_dir) or {}).get("started")) if s.alive else False
    s.status, s.reason = prog.verdict(s.alive, began=events.exists())
    s.step, s.total_steps, s.final_loss = prog.step, prog.total_steps, prog.final_loss
    s.started, s.updated = prog.first_t, prog.last_t
    s.checkpoints = checkpoints(run_dir)
    return s


_FOLDS: dict[str, tuple[EventReader, Progress, int]] = {}
_FOLDS_LOCK = threading.Lock()


def folded(events: Path) -> Progress:
    """A run's state from its events file, folding only the lines added since the last call (the runs list is
    asked for every few seconds by each page and API client; a long run's file is megabytes). A file that was
    replaced or cut (a run folder deleted and made again) is read again from the start. Returns a copy."""
    key = str(events)
    if not os.path.exists(events):
        with _FOLDS_LOCK:
            _FOLDS.pop(key, None)
        return Progress()
    with _FOLDS_LOCK:
        reader, prog, generation = _FOLDS.get(key) or (EventReader(events), Progress(), 0)
        new = reader.read_new()
        if reader.generation != generation:
            prog, generation = Progress(), reader.generation
        prog.add(new)
        _FOLDS[key] = (reader, prog, generation)
        return copy.deepcopy(prog)


def inside(saves: Path, run_dir: Path) -> bool:
    """A real folder directly inside saves/: not a symlink (to elsewhere), not reached through '..'."""
    saves, run_dir = Path(saves), Path(run_dir)
    if run_dir.is_symlink() or not run_dir.is_dir():
        return False
    try:
        return run_dir.resolve().parent == saves.resolve()
    except OSError:
        return False


def run_path(saves: Path, name: str) -> Path:
    """saves/<name> for a run name that came from outside (a browser, the API); ValueError if it escapes."""
    from engine.config import RUN_NAME_RE
    if not isinstance(name, str) or not RUN_NAME_RE.match(name):
        raise ValueError(f"{name!r} is not a run name (letters, digits, '.', '_' and '-')")
    path = Path(saves) / name
    if not inside(saves, path):
        raise ValueError(f"{name!r} is not a run folder inside {saves}")
    return path


def list_runs(saves: Path) -> list[RunSummary]:
    """Every run in saves/, newest first. Symlinks are ignored: a run folder is a real folder in saves/."""
    saves = Path(saves)
    if not saves.is_dir():
        return []
    out = [s for d in saves.iterdir() if not d.name.startswith(".") and inside(saves, d) and (s := summarize(d))]
    return sorted(out, key=lambda s: s.started or 0, reverse=True)
