"""Run discovery: every run folder in saves/, with its status, found again after an app restart.

Light module. A run folder holds config.yaml, events.jsonl, stdout.log, worker.json (the pid of the
worker while it lives), checkpoints/, adapter/ or model/.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from engine.events import EVENTS_FILE, EventReader

WORKER_FILE = "worker.json"
STALL_SECONDS = 300.0  # a live worker silent this long while training is reported "stalled"
STALL_ENV = "WHETSTONE_STALL_SECONDS"


def stall_seconds() -> float:
    """The stall threshold: WHETSTONE_STALL_SECONDS when set to a positive number, else STALL_SECONDS."""
    try:
        v = float(os.environ.get(STALL_ENV, ""))
    except ValueError:
        return STALL_SECONDS
    return v if v > 0 else STALL_SECONDS


def is_stalled(status: str, alive: bool, last_event_t: Optional[float], now: Optional[float] = None) -> bool:
    """A live worker in the middle of training that has written nothing for longer than the threshold."""
    import time
    now = time.time() if now is None else now
    return alive and status in ("running", "checkpoint") and last_event_t is not None and \
        now - last_event_t > stall_seconds()


STALLED_REASON = ("The worker is alive but has written nothing for {s:.0f} s: it may be hung (stuck disk or "
                  "network, a paused process, a deadlock). Stop it and Resume from the last checkpoint.")


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
    alive: bool = False
    checkpoints: list[str] = field(default_factory=list)


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child counts as dead.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _proc_start_time(pid: int) -> Optional[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[19]
    except (OSError, IndexError):
        return None


def worker_info(run_dir: Path) -> Optional[dict]:
    try:
        return json.loads((Path(run_dir) / WORKER_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def worker_alive(run_dir: Path) -> bool:
    """True while this run's worker process lives (guarding against pid reuse by its start time)."""
    info = worker_info(run_dir)
    if not info:
        return False
    pid = int(info.get("pid", 0))
    if not pid_alive(pid):
        return False
    start = info.get("proc_start")
    return start is None or _proc_start_time(pid) == start


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
    for e in EventReader(run_dir / EVENTS_FILE).read_new():
        s.updated = e.get("t", s.updated)
        if s.started is None:
            s.started = e.get("t")
        s.step = max(s.step, int(e.get("step") or 0))
        if e.get("kind") == "status":
            s.status = e.get("status", s.status)
            if e.get("total_steps"):
                s.total_steps = e["total_steps"]
            if e.get("status") in ("starting", "loading", "running"):
                s.reason = ""
        elif e.get("kind") == "train" and e.get("loss") is not None:
            s.final_loss = e["loss"]
        elif e.get("kind") == "error":
            s.reason = e.get("message", "")
    s.alive = worker_alive(run_dir)
    if s.status in ("starting", "loading", "running", "checkpoint", "unknown") and not s.alive:
        # The worker is gone without saying goodbye: killed (SIGKILL, OOM killer, power loss).
        if s.status != "unknown" or (run_dir / EVENTS_FILE).exists():
            s.status = "failed"
            s.reason = s.reason or ("The worker process died without a word (killed, or out of host memory). "
                                    "Resume from the last checkpoint, or lower batch_size / cutoff_len.")
    elif is_stalled(s.status, s.alive, s.updated):
        import time
        s.status = "stalled"
        s.reason = STALLED_REASON.format(s=time.time() - s.updated)
    s.checkpoints = checkpoints(run_dir)
    return s


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
