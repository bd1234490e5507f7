"""The list of runs found in saves/: name, model, method, status, step, final loss, when."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from engine import runs

HEADERS = ["run", "model", "method", "status", "step", "final loss", "started"]


def when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def short_model(name: str) -> str:
    return Path(name.rstrip("/")).name if name.startswith(("/", ".", "~")) else name


def rows(summaries: list[runs.RunSummary]) -> list[list]:
    out = []
    for s in summaries:
        step = f"{s.step} / {s.total_steps}" if s.total_steps else str(s.step)
        loss = round(s.final_loss, 4) if s.final_loss is not None else None
        out.append([s.name, short_model(s.model), s.method, s.status, step, loss, when(s.started)])
    return out


def find(saves: Path) -> list[runs.RunSummary]:
    """Every run in the folder, newest first (each run's events are read once, on request, not per tick)."""
    return runs.list_runs(saves)
