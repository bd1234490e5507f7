"""Worker processes: the one spawn helper every worker starts through (train, chat, export, evaluate),
the worker file that names a run's live worker, liveness checks that survive pid reuse, and signalling
a worker's whole process group. Light: stdlib only.

Workers are started from a written config, never through a shell, in a new session (their own process
group), so a stop reaches every child and frees all their memory; a reaper thread collects each one so
the app never keeps zombies. A worker ends through `exit_now` once its last event is written, so the
process (and the memory it holds) is gone a moment after it said so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn, Optional

from engine.runs.atomic import write_text
from engine.runs.paths import REPO

WORKER_FILE = "worker.json"


def python_module(module: str, *args: str) -> list[str]:
    """The argv of `python -m <module> <args>` with this interpreter."""
    return [sys.executable, "-m", module, *args]


def spawn(argv: list[str], log: Optional[Path] = None, talk: bool = False,
          worker_file: Optional[Path] = None, env: Optional[dict] = None) -> subprocess.Popen:
    """Start a worker from the repository folder in a new session.

    log: its output goes there (appended); talk=True: stdin and stdout are text pipes for a JSON-lines
    conversation (the chat worker) and only stderr goes to the log. worker_file: write its pid there (a
    run's worker.json) so other processes find it. env: variables set for this worker alone (the run
    queue gives each run its GPUs with CUDA_VISIBLE_DEVICES).
    """
    env = dict(os.environ, PYTHONUNBUFFERED="1", **(env or {}))
    env.setdefault("TOKENIZERS_PARALLELISM", "false")  # no tokenizer thread pool forked under a worker
    out = open(log, "ab") if log else subprocess.DEVNULL
    try:
        if talk:
            proc = subprocess.Popen(argv, cwd=str(REPO), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=out,
                                    start_new_session=True, env=env, text=True, bufsize=1)
        else:
            proc = subprocess.Popen(argv, cwd=str(REPO), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True, env=env)
    finally:
        if log:
            out.close()
    if worker_file is not None:
        write_worker_file(worker_file, {"pid": proc.pid, "proc_start": proc_start_time(proc.pid),
                                        "started": time.time(), "cmd": proc.args})
    if not talk:  # a talking worker is reaped by its client's reader thread
        threading.Thread(target=proc.wait, daemon=True).start()
    return proc


def exit_now(code: int) -> NoReturn:
    """End a worker process at once after its last event: run the atexit handlers (logging, multiprocessing,
    trackers; ~0.01 s), flush stdout and stderr, then skip the interpreter's teardown of torch / transformers
    objects and modules, which took 1.4 s after the final event on an idle 2-core machine (3-4 s and more on a
    busy one) while the process kept its memory and a script that started the next run was refused. Everything
    a worker leaves is on disk by then: events are flushed per line, outputs are published whole."""
    import atexit
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code)


def write_worker_file(path: Path, info: dict) -> None:
    write_text(Path(path), json.dumps(info))


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


def proc_start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot: with the pid, it names one process for good."""
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


def _same_process(pid: int, start: Optional[str]) -> bool:
    return pid_alive(pid) and (start is None or proc_start_time(pid) == start)


def worker_alive(run_dir: Path) -> bool:
    """True while this run's worker process lives (guarding against pid reuse by its start time); under
    torchrun, while rank 0 or the torchrun process that holds the other ranks lives (worker.json's
    "launcher"), so a run is not over until all its processes, and the GPU memory they hold, are gone."""
    info = worker_info(run_dir)
    if not info:
        return False
    if _same_process(int(info.get("pid", 0)), info.get("proc_start")):
        return True
    launcher = info.get("launcher")
    return isinstance(launcher, dict) and _same_process(int(launcher.get("pid", 0)), launcher.get("proc_start"))


def wait_for_exit(run_dir: Path, timeout: float) -> bool:
    """Wait until the run's worker processes are gone; False if they still live after `timeout` seconds."""
    deadline = time.time() + timeout
    while worker_alive(run_dir):
        if time.time() >= deadline:
            return False
        time.sleep(0.05)
    return True
