"""The run queue: runs waiting their turn, kept in saves/.queue/queue.json. Light.

Every change (add, cancel, move, a start) happens under one file lock (saves/.queue/lock) and is written
whole (engine.runs.atomic), so two app processes, an app and the CLI, or a crash half-way, never lose an
entry or see half a file. Each entry is a complete, checked run config with its run name fixed when it is
queued; the run folder of that name is made in one rename when it starts (engine.runs.launcher), so an
entry can never become two runs. engine.runs.queue_runner starts the entries, one dispatcher at a time.

queue.json holds the entries in the order they start, and the latest starts (name, time, GPUs) that the
Train tab follows and the GPU placement reads.
"""
from __future__ import annotations

import fcntl
import json
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from engine import config as C
from engine.runs.atomic import write_text
from engine.runs.processes import worker_alive

QUEUE_DIR = ".queue"
QUEUE_FILE = "queue.json"
KEEP_STARTED = 50  # how many past starts queue.json remembers


class QueueError(ValueError):
    """Why a queue change was refused, in words a user can act on."""


@dataclass
class Entry:
    name: str                         # the run's folder name, fixed when queued
    config: dict                      # the whole run config (engine.config.to_dict), output.run_name = name
    queued: float = 0.0
    sweep: str = ""                   # the sweep it belongs to ('' = queued on its own)
    error: str = ""                   # why it could not start; it waits for the user to cancel it
    claimed: Optional[float] = None   # when a dispatcher began starting it (under the lock)

    @property
    def run_config(self) -> C.RunConfig:
        return C.from_dict(self.config, check_files=False)


@dataclass
class Queue:
    entries: list[Entry] = field(default_factory=list)
    started: list[dict] = field(default_factory=list)   # {"name", "t", "gpus"}, oldest first

    def find(self, name: str) -> Optional[Entry]:
        return next((e for e in self.entries if e.name == name), None)

    @property
    def waiting(self) -> list[Entry]:
        """Entries that will start by themselves (not those that failed to start)."""
        return [e for e in self.entries if not e.error]


def folder(saves: Path) -> Path:
    return Path(saves) / QUEUE_DIR


@contextmanager
def locked(saves: Path) -> Iterator[None]:
    """The queue's lock: one change at a time across processes. Never held while waiting on a run."""
    d = folder(saves)
    d.mkdir(parents=True, exist_ok=True)
    with open(d / "lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def read(saves: Path) -> Queue:
    """The queue as last written (no lock needed: the file is replaced whole)."""
    try:
        data = json.loads((folder(saves) / QUEUE_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Queue()
    except (OSError, json.JSONDecodeError) as e:
        raise QueueError(f"{folder(saves) / QUEUE_FILE} cannot be read ({e}); fix or move it aside") from None
    names = {f for f in Entry.__dataclass_fields__}
    return Queue(entries=[Entry(**{k: v for k, v in e.items() if k in names}) for e in data.get("entries", [])],
                 started=list(data.get("started", [])))


def write(saves: Path, q: Queue) -> None:
    """Replace queue.json whole. Call under `locked`."""
    q.started = q.started[-KEEP_STARTED:]
    write_text(folder(saves) / QUEUE_FILE, json.dumps({"version": 1, "entries": [asdict(e) for e in q.entries],
                                                       "started": q.started}, indent=1))


def signature(saves: Path) -> tuple:
    """Changes whenever the queue does (for a UI that redraws only then)."""
    try:
        st = (folder(saves) / QUEUE_FILE).stat()
        return st.st_mtime_ns, st.st_size
    except OSError:
        return (0, 0)


def _unique(saves: Path, q: Queue, name: str, taken: set[str]) -> str:
    out, n = name, 2
    while (Path(saves) / out).exists() or q.find(out) or out in taken:
        out = f"{name}-{n}"
        n += 1
    return out


def add(saves: Path, configs: list[C.RunConfig], sweep: str = "") -> list[str]:
    """Queue runs at the end, all or none: each config is checked (settings, then rows, as Start checks
    them) before anything is written. Returns the run names. Raises ConfigError, DataProblems, QueueError."""
    from engine.data.checks import before_launch
    from engine.runs.launcher import DataProblems, new_run_name
    saves = Path(saves).resolve()
    checked: dict[str, list[str]] = {}
    for cfg in configs:
        C.from_dict(C.to_dict(cfg))  # a bad config is refused with every problem named
        key = json.dumps(C.to_dict(cfg)["data"], sort_keys=True) + cfg.method.stage
        if key not in checked:
            checked[key] = before_launch(cfg)
        if checked[key]:
            raise DataProblems(checked[key])
    with locked(saves):
        q = read(saves)
        names: list[str] = []
        for cfg in configs:
            given = cfg.output.run_name.strip()
            if given and ((saves / given).exists() or q.find(given) or given in names):
                raise QueueError(f"A run named {given!r} already exists or is queued; pick another output.run_name.")
            name = given or _unique(saves, q, new_run_name(cfg), set(names))
            names.append(name)
        now = time.time()
        for name, cfg in zip(names, configs):
            cfg = C.replace(C.replace(cfg, "output.run_name", name), "output.saves_dir", str(saves))
            q.entries.append(Entry(name=name, config=C.to_dict(cfg), queued=now, sweep=sweep))
        write(saves, q)
    return names


def cancel(saves: Path, name: str) -> str:
    """Remove an entry that has not started. A run that is already going is never touched (Stop it)."""
    with locked(saves):
        q = read(saves)
        e = q.find(name)
        if e is None:
            if worker_alive(Path(saves) / name):
                raise QueueError(f"{name} is already running, not waiting; Stop it in the Train tab to end it.")
            raise QueueError(f"{name} is not in the queue (it has started, or was cancelled).")
        if e.claimed is not None and (Path(saves) / name).exists():
            raise QueueError(f"{name} is starting right now; Stop it in the Train tab to end it.")
        q.entries.remove(e)
        write(saves, q)
    return f"Removed {name} from the queue."


def move(saves: Path, name: str, by: int) -> int:
    """Move an entry up (by < 0) or down the queue; returns its new position (0 = next to start)."""
    with locked(saves):
        q = read(saves)
        e = q.find(name)
        if e is None:
            raise QueueError(f"{name} is not in the queue (it has started, or was cancelled).")
        i = q.entries.index(e)
        j = min(max(i + by, 0), len(q.entries) - 1)
        q.entries.insert(j, q.entries.pop(i))
        write(saves, q)
    return j


def latest_start(saves: Path) -> Optional[dict]:
    """The last run the queue started: {"name", "t", "gpus"}."""
    try:
        started = read(saves).started
    except QueueError:
        return None
    return started[-1] if started else None
