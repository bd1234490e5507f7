"""Starting an evaluation worker (engine/evaluate.py) and reading its results. Light module.

Each evaluation gets saves/<run>/eval/<stamp>-<dataset>/ with config.yaml, events.jsonl,
results.json and results.csv.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import yaml

from engine.chat_source import weights_dir
from engine.events import EventReader
from engine.paths import REPO


class EvalError(ValueError):
    pass


def start_eval(run_dir: str | Path, dataset: str, checkpoint: str = "", max_new_tokens: int = 64,
               max_rows: Optional[int] = None) -> tuple[Path, subprocess.Popen]:
    """Create the eval folder and start the worker; returns (folder, process)."""
    run_dir = Path(run_dir)
    if weights_dir(run_dir, checkpoint) is None:
        raise EvalError(f"run {run_dir.name} has no {'checkpoint ' + checkpoint if checkpoint else 'final weights'} "
                        "to evaluate yet")
    from engine import dataset_names
    err = dataset_names.problem(dataset)
    if err:
        raise EvalError(f"dataset: {err}")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(dataset).stem)[:40]
    out = run_dir / "eval" / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    out.mkdir(parents=True, exist_ok=False)
    cfg = {"run_dir": str(run_dir.resolve()), "dataset": dataset, "checkpoint": checkpoint,
           "max_new_tokens": max_new_tokens, "max_rows": max_rows}
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    log = open(out / "stdout.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "engine.evaluate", "--config", str(out / "config.yaml")],
                            cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    log.close()
    threading.Thread(target=proc.wait, daemon=True).start()
    return out, proc


def progress(out: Path) -> dict:
    """{status, progress, reason} of an evaluation from its events (small file: read whole)."""
    state = {"status": "starting", "progress": 0.0, "reason": ""}
    for e in EventReader(out / "events.jsonl").read_new():
        if "progress" in e:
            state["progress"] = e["progress"]
        if e.get("kind") == "status":
            state["status"] = e.get("status")
            state["reason"] = e.get("reason", "")
    return state


def results(out: Path) -> Optional[dict]:
    try:
        return json.loads((Path(out) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def past_evals(run_dir: str | Path) -> list[Path]:
    d = Path(run_dir) / "eval"
    return sorted((p for p in d.iterdir() if (p / "results.json").is_file()), reverse=True) if d.is_dir() else []
