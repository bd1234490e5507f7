"""The list of runs found in saves/: name, model, method, status, step, final loss, when."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from engine.runs import store as runs
from webui.live import RunSeries

HEADERS = ["run", "model", "method", "status", "step", "final loss", "started"]


def when(t: Optional[float]) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else ""


def short_model(name: str) -> str:
    return Path(name.rstrip("/")).name if name.startswith(("/", ".", "~")) else name


def _step_text(step: int, total: Optional[int]) -> str:
    return f"{step} / {total}" if total else str(step)


def rows(summaries: list[runs.RunSummary]) -> list[list]:
    out = []
    for s in summaries:
        step = _step_text(s.step, s.total_steps)
        loss = round(s.final_loss, 4) if s.final_loss is not None else None
        out.append([s.name, short_model(s.model), s.method, s.status, step, loss, when(s.started)])
    return out


def find(saves: Path) -> list[runs.RunSummary]:
    """Every run in the folder, newest first (each run's events are read once, on request, not per tick)."""
    return runs.list_runs(saves)


def with_live_row(table: list[list], name: str, series: RunSeries) -> list[list]:
    """The table with the watched run's row brought up to date from its series (no file is re-read)."""
    loss = series.latest("loss")
    out = []
    for row in table:
        if row[0] == name:
            row = [row[0], row[1], row[2], series.status, _step_text(series.step, series.total_steps),
                   round(loss, 4) if loss is not None else row[5], row[6]]
        out.append(row)
    return out
