"""Sweeps: one queued run per combination of a grid (engine.config.grid), with readable run names, a record
of the sweep in saves/.sweeps/<name>.json (so `python app.py compare NAME` finds its runs), and following
its runs in the foreground, one line per run. Light.
"""
from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Callable, Optional

from engine import config as C
from engine.config import grid as G
from engine.runs import launcher
from engine.runs import queue as Q
from engine.runs.atomic import write_text
from engine.runs.events import EVENTS_FILE, EventReader
from engine.runs.processes import worker_alive
from engine.runs.progress import Progress
from engine.runs.queue_runner import ensure_runner

SWEEPS_DIR = ".sweeps"


def sweeps_folder(saves: Path) -> Path:
    return Path(saves) / SWEEPS_DIR


def new_name() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S")


def run_names(sweep: str, combos: list) -> list[str]:
    """`<sweep>-<n>-<field>_<value>-...`, e.g. lr-1-learning_rate_1e-4-rank_8 (cut to a run name's length)."""
    width = len(str(len(combos)))
    out = []
    for i, combo in enumerate(combos, 1):
        parts = [f"{key.split('.')[-1]}_{re.sub(r'[^A-Za-z0-9_-]+', '.', text).strip('.')}" for key, _, text in combo]
        out.append(f"{sweep}-{i:0{width}d}-{'-'.join(parts)}"[:100].rstrip("-._"))
    return out


def manifest(saves: Path, name: str) -> Optional[dict]:
    """A sweep's record: {"name", "created", "grid", "runs"}; None when there is no such sweep."""
    if not C.RUN_NAME_RE.match(str(name)):
        return None
    try:
        return json.loads((sweeps_folder(saves) / f"{name}.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def names(saves: Path) -> list[str]:
    """Every sweep recorded in saves/, newest first."""
    d = sweeps_folder(saves)
    found = [p for p in d.glob("*.json")] if d.is_dir() else []
    return [p.stem for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]


def queue_sweep(saves: Path, base: dict, specs: list[str], name: str = "", confirmed: bool = False) -> tuple[str, list[str]]:
    """Check every combination (one ConfigError listing all problems), then queue them all, in grid order.
    Returns (sweep name, run names). Raises ConfigError, DataProblems or QueueError before queueing anything."""
    saves = Path(saves).resolve()
    name = name.strip() or new_name()
    problems = []
    if not C.RUN_NAME_RE.match(name):
        problems.append(f"--name: {name!r} may only hold letters, digits, '.', '_' and '-'")
    elif manifest(saves, name) is not None:
        problems.append(f"--name: a sweep named {name!r} already exists in {saves}; pick another name")
    base = C.apply_overrides(base, [])
    base.setdefault("output", {})
    if not isinstance(base["output"], dict):
        base["output"] = {}
    base["output"].update(run_name="", saves_dir=str(saves))
    try:
        configs, combos, axes = G.expand(base, specs, confirmed)
    except C.ConfigError as e:
        raise C.ConfigError(problems + e.problems) from None
    if problems:
        raise C.ConfigError(problems)
    runs = run_names(name, combos)
    configs = [C.replace(cfg, "output.run_name", run) for cfg, run in zip(configs, runs)]
    record = sweeps_folder(saves) / f"{name}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    write_text(record, json.dumps({"name": name, "created": time.time(), "runs": runs,
                                   "grid": {a.key: list(a.texts) for a in axes}}, indent=1))
    try:
        Q.add(saves, configs, sweep=name)
    except BaseException:
        record.unlink(missing_ok=True)  # nothing was queued: no sweep either
        raise
    ensure_runner(saves)
    return name, runs


def wait_turn(saves: Path, name: str, poll_s: float = 0.5) -> tuple[Optional[Path], str]:
    """Wait until a queued run has started: (its folder, ''), or (None, why) if it was cancelled or cannot start."""
    last_check = time.time()  # whoever queued it has just made sure a runner works
    while True:
        q = Q.read(saves)
        e = q.find(name)
        if e is None:
            run = Path(saves) / name
            return (run, "") if (run / "config.yaml").is_file() else (None, "cancelled")
        if e.error:
            return None, f"could not start: {e.error.splitlines()[0]}"
        if time.time() - last_check > 5:  # the runner died (killed)? start another
            ensure_runner(saves)
            last_check = time.time()
        time.sleep(poll_s)


def _line(label: str, p: Progress, status: str) -> str:
    parts = [f"{label}: {status}", f"step {p.step}" + (f"/{p.total_steps}" if p.total_steps else "")]
    if p.final_loss is not None:
        parts.append(f"loss {p.final_loss:.4f}")
    if p.best_eval_loss is not None:
        parts.append(f"best eval {p.best_eval_loss:.4f}")
    if p.first_t is not None and p.last_t is not None:
        parts.append(f"{p.last_t - p.first_t:.0f} s")
    return "  ".join(parts)


def follow_run(run_dir: Path, label: str, say: Callable[[str], None], poll_s: float = 0.5) -> str:
    """Follow one run until its worker has said its last word and exited; one line, redrawn on a terminal."""
    reader, p = EventReader(run_dir / EVENTS_FILE), Progress()
    tty = sys.stdout.isatty()
    while True:
        p.add(reader.read_new())
        alive = worker_alive(run_dir)
        if not alive:
            p.add(reader.read_new())
            status, why = p.verdict(False, began=True)
            say(("\r" + " " * 150 + "\r" if tty else "") + _line(label, p, status)
                + (f"\n    {why}" if status == "failed" else ""))
            return status
        if tty:
            sys.stdout.write("\r" + _line(label, p, p.status)[:150].ljust(150))
            sys.stdout.flush()
        time.sleep(poll_s)


def follow(saves: Path, runs: list[str], say: Callable[[str], None] = print) -> int:
    """Follow a sweep's runs in the foreground, in order. Ctrl-C removes the sweep's waiting runs from the
    queue first, then stops the running one (it saves a checkpoint). Returns 0, or 130 when interrupted."""
    current: Optional[Path] = None
    try:
        for i, name in enumerate(runs, 1):
            label = f"[{i}/{len(runs)}] {name}"
            current, why = wait_turn(saves, name)
            if current is None:
                say(f"{label}: {why}")
                continue
            follow_run(current, label, say)
            current = None
    except KeyboardInterrupt:
        left = 0
        for name in runs:
            try:
                Q.cancel(saves, name)
                left += 1
            except Q.QueueError:
                pass
        say(f"\ninterrupted: {left} waiting run(s) of the sweep removed from the queue")
        if current is not None and worker_alive(current):
            say(f"stopping {current.name} (it saves a checkpoint; resume with python app.py train --resume {current})")
            launcher.stop(current, wait=True)
        return 130
    return 0
