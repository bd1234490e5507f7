"""Starting an evaluation worker (engine.evaluate) and reading its progress and results. Light.

Each evaluation gets saves/<run>/eval/<stamp>-<dataset>/ with config.yaml (an EvalConfig),
events.jsonl, stdout.log, results.json and results.csv.
"""
from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Optional

from engine.config.evaluate import EvalConfig, save
from engine.runs.events import EventReader
from engine.runs.processes import python_module, spawn
from engine.runs.progress import Progress, fold
from engine.runs.store import weights_dir


class EvalError(ValueError):
    pass


def start_eval(run_dir: str | Path, dataset: str, checkpoint: str = "", max_new_tokens: int = 64,
               max_rows: Optional[int] = None) -> tuple[Path, subprocess.Popen]:
    """Create the eval folder and start the worker; returns (folder, process)."""
    run_dir = Path(run_dir)
    if weights_dir(run_dir, checkpoint) is None:
        raise EvalError(f"run {run_dir.name} has no {'checkpoint ' + checkpoint if checkpoint else 'final weights'} "
                        "to evaluate yet")
    from engine.data import names
    err = names.problem(dataset)
    if err:
        raise EvalError(f"dataset: {err}")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(dataset).stem)[:40]
    out = run_dir / "eval" / f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}"
    out.mkdir(parents=True, exist_ok=False)
    cfg = EvalConfig(run_dir=str(run_dir.resolve()), dataset=dataset, checkpoint=checkpoint,
                     max_new_tokens=max_new_tokens, max_rows=max_rows)
    save(cfg, out / "config.yaml")
    proc = spawn(python_module("engine.evaluate", "--config", str(out / "config.yaml")), log=out / "stdout.log")
    return out, proc


def progress(out: Path) -> Progress:
    """An evaluation's state from its events (a small file: read whole)."""
    return fold(EventReader(Path(out) / "events.jsonl").read_new())


def results(out: Path) -> Optional[dict]:
    try:
        return json.loads((Path(out) / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return None


def past_evals(run_dir: str | Path) -> list[Path]:
    d = Path(run_dir) / "eval"
    return sorted((p for p in d.iterdir() if (p / "results.json").is_file()), reverse=True) if d.is_dir() else []
