"""Who starts queued runs: `python -m engine.runs.queue_runner --saves DIR`, one per saves folder. Light.

The runner is a small process of its own (started through the one spawn helper, in its own session), so
the queue goes on with no browser open, after the app that queued the runs has quit, and across app
restarts. Whoever queues a run, and every app while it serves, calls `ensure_runner`: it starts a runner
when runs wait and none holds saves/.queue/runner.lock. A second runner finds the lock held and exits.

Starting an entry (`dispatch`) happens under the queue's lock: the entry is marked claimed, the run is
started through engine.runs.launcher.start (all its checks), and the entry removed, in that order. Should a
dispatcher die between the start and the removal, the run folder named after the entry shows that it
started, and the next dispatcher drops the entry instead of starting it again; two dispatchers (even
without the runner lock) can never start one entry twice, because launcher.start refuses a run name that
exists.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Optional

from engine import config as C
from engine.config import queue as settings_file
from engine.runs import launcher, placement
from engine.runs import queue as Q
from engine.runs.atomic import write_text
from engine.runs.processes import WORKER_FILE, proc_start_time, python_module, spawn, worker_alive

POLL_S = 1.0
RUNNER_LOCK, RUNNER_FILE, RUNNER_LOG = "runner.lock", "runner.json", "runner.log"


def live_runs(saves: Path) -> list[str]:
    """Runs in saves/ whose worker is alive (worker files only: cheap enough to ask every second)."""
    saves = Path(saves)
    if not saves.is_dir():
        return []
    return sorted(d.name for d in saves.iterdir()
                  if not d.name.startswith(".") and (d / WORKER_FILE).is_file() and worker_alive(d))


def _gpus_of(q: Q.Queue, name: str) -> Optional[list[int]]:
    """The GPUs the queue gave a live run; None when the queue did not place it (any GPU may be in use)."""
    for s in reversed(q.started):
        if s.get("name") == name:
            return s.get("gpus")
    return None


def dispatch(saves: Path) -> list[str]:
    """Start every queued run that may start now (engine.runs.placement decides); returns their names.
    An entry that cannot start (its settings or rows went bad since it was queued) keeps its place with the
    reason, for the user to read and cancel; the entries behind it go on."""
    saves = Path(saves)
    gpus = settings_file.load(Q.folder(saves)).gpus
    started: list[str] = []
    with Q.locked(saves):
        q = Q.read(saves)
        for e in [e for e in q.entries if e.claimed is not None]:  # a dispatcher died while starting it
            if (saves / e.name).exists():
                q.entries.remove(e)   # it started: never start it twice
            else:
                e.claimed = None      # it never started: it waits again
        live = live_runs(saves)
        waiting = [(e.name, C.world_size(e.run_config) if _loads(e) else 1) for e in q.waiting]
        plan = placement.assign(waiting, [_gpus_of(q, n) for n in live], gpus)
        Q.write(saves, q)
        for name, devices in plan:
            e = q.find(name)
            e.claimed = time.time()
            Q.write(saves, q)
            try:
                cfg = C.from_dict(e.config)
                launcher.start(cfg, devices=devices if len(gpus) >= 2 else None)
            except (C.ConfigError, launcher.LaunchError) as err:
                e.claimed = None
                if devices is None and live_runs(saves):  # someone pressed Start a moment before us: wait
                    Q.write(saves, q)
                    break
                e.error = str(err)
                Q.write(saves, q)
                continue
            q.entries.remove(e)
            q.started.append({"name": name, "t": time.time(), "gpus": devices})
            Q.write(saves, q)
            started.append(name)
    return started


def _loads(e: Q.Entry) -> bool:
    try:
        e.run_config
        return True
    except C.ConfigError:
        return False


def pending(saves: Path) -> bool:
    """Runs wait that will start by themselves."""
    try:
        return bool(Q.read(saves).waiting)
    except Q.QueueError:
        return False


def runner_alive(saves: Path) -> bool:
    """Some process holds this queue's runner lock."""
    path = Q.folder(saves) / RUNNER_LOCK
    if not path.exists():
        return False
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
    return False


def ensure_runner(saves: Path) -> bool:
    """Start a runner for this saves folder when runs wait and none is working; True if one was started."""
    saves = Path(saves).resolve()
    if not pending(saves) or runner_alive(saves):
        return False
    spawn(python_module("engine.runs.queue_runner", "--saves", str(saves)), log=Q.folder(saves) / RUNNER_LOG)
    return True


def keep_running(saves: Path, every_s: float = 10.0) -> None:
    """A daemon thread (in the app) that restarts the runner should it die while runs wait."""
    import threading

    def loop():
        while True:
            try:
                ensure_runner(saves)
            except OSError:
                pass
            time.sleep(every_s)
    threading.Thread(target=loop, daemon=True, name="queue-runner-keeper").start()


def run(saves: Path) -> int:
    """Start queued runs as their turn comes, until none waits. Exits at once if another runner works here."""
    saves = Path(saves)
    d = Q.folder(saves)
    d.mkdir(parents=True, exist_ok=True)
    lock = open(d / RUNNER_LOCK, "a")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"another runner already works the queue in {saves}", flush=True)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    write_text(d / RUNNER_FILE, json.dumps({"pid": os.getpid(), "proc_start": proc_start_time(os.getpid()),
                                            "started": time.time()}))
    print(f"{time.strftime('%H:%M:%S')} runner {os.getpid()} works the queue in {saves}", flush=True)
    while d.is_dir():
        try:
            for name in dispatch(saves):
                print(f"{time.strftime('%H:%M:%S')} started {name}", flush=True)
        except Exception:  # a bad queue file or a full disk: say it, and try again next time round
            traceback.print_exc()
        if not pending(saves):
            break
        time.sleep(POLL_S)
    print(f"{time.strftime('%H:%M:%S')} nothing waits; runner {os.getpid()} exits", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.runs.queue_runner", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--saves", required=True, type=Path, help="the saves folder whose queue to work")
    return run(ap.parse_args(argv).saves)


if __name__ == "__main__":
    sys.exit(main())
