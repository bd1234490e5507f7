"""Starting, stopping and resuming training runs (DESIGN.md contract 3): one run at a time per saves
folder, checked (settings, rows, disk space, this machine) before its folder is made. Light.

The worker is started through engine.runs.processes.spawn from the run's written config.yaml, never
through a shell, in its own process group so that Stop reaches every child and frees all their memory.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from engine import config as C
from engine.preflight import disk
from engine.runs import torchrun
from engine.runs.paths import saves_dir
from engine.runs.processes import WORKER_FILE, spawn, wait_for_exit, worker_alive, worker_info
from engine.runs.store import inside, list_runs

STOP_GRACE_S = 120.0  # SIGTERM first (the worker saves a checkpoint), SIGKILL after this
EXIT_WAIT_S = 30.0    # a worker that has said its last word is waited for this long before a new run starts


class LaunchError(RuntimeError):
    """Why a run could not be started, in words a user can act on."""


class DataProblems(LaunchError):
    """Rows that would fail the run, found before anything is written (the CLI and the Train tab say them)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("The data has problems; fix them (the Dataset tab shows each row) and start again:\n"
                         + "\n".join(problems))


def new_run_name(cfg: C.RunConfig) -> str:
    model = Path(cfg.model.name_or_path.rstrip("/")).name.replace("/", "-")[:40] or "model"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{model}-{cfg.method.finetuning}-{stamp}"


@contextmanager
def _saves_lock(saves: Path):
    """One launcher at a time across processes and browsers: check-then-create is atomic."""
    saves.mkdir(parents=True, exist_ok=True)
    with open(saves / ".launch.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def active_run(saves: Path) -> Optional[Path]:
    """The run at work in saves/: its worker lives and has not said its last word (one fold of its events)."""
    for s in list_runs(saves):
        if s.going:
            return s.path
    return None


def _refuse_while_busy(saves: Path, doing: str) -> None:
    """Refuse while a run is going; wait (up to EXIT_WAIT_S) for runs that have ended but whose worker is
    still exiting: it may still hold GPU memory, and a run started beside it could run out."""
    found = list_runs(saves)
    busy = next((s for s in found if s.going), None)
    if busy is not None:
        raise LaunchError(f"Run {busy.name!r} is still going; stop it before {doing} another.")
    for s in found:
        if s.alive and not wait_for_exit(s.path, EXIT_WAIT_S):
            pid = (worker_info(s.path) or {}).get("pid")
            raise LaunchError(f"Run {s.name!r} has {s.status}, but its worker (pid {pid}) has not exited "
                              f"{EXIT_WAIT_S:.0f} s later and may still hold memory. Press Stop on that run "
                              f"(or end pid {pid}), then try again.")


def worker_command(config_path: Path) -> list[str]:
    """The argv that trains the run whose config is at config_path (python, or torchrun for several)."""
    return torchrun.worker_command(C.load(config_path, check_files=False), config_path)


def _check_machine(cfg: C.RunConfig) -> None:
    """Refuse before anything starts when this machine cannot run the distributed section."""
    problems = torchrun.launch_problems(cfg)
    if problems:
        raise C.ConfigError(problems)


def create_run(cfg: C.RunConfig) -> Path:
    """Validate, then create saves/<run>/ with config.yaml in one rename: never a half-made folder."""
    C.from_dict(C.to_dict(cfg))  # raises ConfigError listing every problem before anything is written
    saves = saves_dir(cfg.output.saves_dir)
    name = cfg.output.run_name or new_run_name(cfg)
    cfg = C.replace(cfg, "output.run_name", name)
    run_dir = saves / name
    if os.path.lexists(run_dir):
        raise LaunchError(f"A run named {name!r} already exists in {saves}; pick another output.run_name, "
                          "or Resume that run.")
    tmp = saves / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir(parents=True)
    C.save(cfg, tmp / "config.yaml")
    tmp.rename(run_dir)
    return run_dir


def _spawn(run_dir: Path, devices: Optional[list[int]] = None) -> None:
    env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, devices))} if devices else None
    spawn(worker_command(run_dir / "config.yaml"), log=run_dir / "stdout.log", worker_file=run_dir / WORKER_FILE,
          env=env)


def start(cfg: C.RunConfig, devices: Optional[list[int]] = None) -> Path:
    """Start a new run in the background; returns its folder. Refuses while another run is going.

    devices: the GPUs this run alone may see (CUDA_VISIBLE_DEVICES). The run queue places runs side by
    side on separate GPUs this way (engine.runs.queue_runner), so it does the one-per-GPU check itself and
    the one-run-at-a-time refusal is skipped."""
    C.from_dict(C.to_dict(cfg))  # a bad config is refused before anything (even the lock file) is written
    from engine.data.checks import before_launch  # reads and checks rows, no tokenizer
    problems = before_launch(cfg)
    if problems:  # a run that cannot train gets no folder
        raise DataProblems(problems)
    no_room, _ = disk.check(cfg)  # what it will write against the free space
    if no_room:
        raise LaunchError(no_room)
    saves = saves_dir(cfg.output.saves_dir)
    with _saves_lock(saves):
        if devices is None:  # the queue places side-by-side runs on GPUs of their own
            _refuse_while_busy(saves, "starting")
        _check_machine(cfg)
        run_dir = create_run(cfg)
        _spawn(run_dir, devices)
    return run_dir


def resume(run_dir: str | Path) -> Path:
    """Start the worker again on an existing run; it continues from its last checkpoint."""
    run_dir = Path(run_dir)
    if not inside(run_dir.parent, run_dir):
        raise LaunchError(f"{run_dir} is not a run folder (a symlink, or not a folder): runs live in real "
                          "folders inside the saves folder.")
    if not (run_dir / "config.yaml").is_file():
        raise LaunchError(f"{run_dir} is not a run folder (no config.yaml).")
    with _saves_lock(run_dir.parent):
        _refuse_while_busy(run_dir.parent, "resuming")
        _check_machine(C.load(run_dir / "config.yaml", check_files=False))
        _spawn(run_dir)
    return run_dir


def stop(run_dir: str | Path, grace_s: float = STOP_GRACE_S, wait: bool = False) -> bool:
    """SIGTERM the worker's process group (it checkpoints and exits), SIGKILL after grace_s.

    Returns True if a live worker was signalled. With wait=True, returns only once it is gone.
    """
    run_dir = Path(run_dir)
    if not worker_alive(run_dir):
        return False
    info = json.loads((run_dir / WORKER_FILE).read_text())
    # The process group: the worker's own, or torchrun's with every rank in it (rank 0 records it).
    pid = int(info.get("pgid") or info["pid"])
    try:
        os.killpg(pid, signal.SIGTERM)
        os.killpg(pid, signal.SIGCONT)  # a paused (stalled) worker wakes up to handle the stop
    except ProcessLookupError:
        return False

    def escalate():
        deadline = time.time() + grace_s
        while time.time() < deadline:
            if not worker_alive(run_dir):
                return
            time.sleep(0.2)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    if wait:
        escalate()
        while worker_alive(run_dir):
            time.sleep(0.1)
    else:
        threading.Thread(target=escalate, daemon=True).start()
    return True
