"""Runs and checkpoints to pick from in the Chat, Evaluate and Export panels (reads saves/ only), and the
handlers those panels share for their (run, weights) dropdowns."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import gradio as gr

from engine.runs.store import checkpoints, list_runs, weights_dir
from webui import state as S

FINAL = "final"


def runs_with_weights(saves: Path) -> list[tuple[str, str]]:
    """(label, run folder) for every run that has a final adapter/model or a checkpoint, newest first."""
    out = []
    for s in list_runs(saves):
        has_final = weights_dir(s.path) is not None
        if has_final or s.checkpoints:
            label = f"{s.name} · {s.method} · {s.status}" + ("" if has_final else " (checkpoints only)")
            out.append((label, str(s.path)))
    return out


def checkpoint_choices(run_dir: str | None) -> list[str]:
    if not run_dir:
        return []
    names = [Path(c).name for c in checkpoints(Path(run_dir))]
    return ([FINAL] if weights_dir(run_dir) is not None else []) + names[::-1]


def checkpoint_value(choice: str | None) -> str:
    return "" if choice in (None, "", FINAL) else choice


def _same(a: Optional[str], b: Optional[str]) -> bool:
    return bool(a and b) and Path(a).resolve() == Path(b).resolve()


def refreshed(saves: Path, picked: Optional[dict], offered: Optional[str] = None) -> tuple[dict, dict]:
    """Updates for a (run, weights) pair of dropdowns. A value the page merely showed is not a choice: the run
    the user picked (picked["run"], with picked["weights"] when they chose those too) is kept while it is there;
    else the run this session trained or is watching (offered) when it has weights; else the newest run."""
    picked = picked or {}
    choices = runs_with_weights(saves)
    values = [v for _, v in choices]
    mine = next((v for v in values if _same(v, picked.get("run"))), None)
    value = mine or next((v for v in values if _same(v, offered)), values[0] if values else None)
    cps = checkpoint_choices(value)
    weights = picked.get("weights") if mine and picked.get("weights") in cps else (cps[0] if cps else None)
    return gr.update(choices=choices, value=value), gr.update(choices=cps, value=weights)


def on_pick_run(run_dir: Optional[str]):
    """The user picked a run: its weights to choose from (final first), and the pick remembered."""
    return on_run(run_dir), {"run": run_dir, "weights": None}


def on_pick_weights(run_dir: Optional[str], weights: Optional[str]):
    """The user picked weights (final or a checkpoint) of the run shown: both remembered as their choice."""
    return {"run": run_dir, "weights": weights}


def on_focus(st: S.RunState):
    """Opening a run list shows the runs saved since the page was built (the value is left alone)."""
    return gr.update(choices=runs_with_weights(S.saves_path(st)))


def on_run(run_dir: Optional[str]):
    """A run picked: its weights to choose from, final first."""
    cps = checkpoint_choices(run_dir)
    return gr.update(choices=cps, value=cps[0] if cps else None)
