"""Experiment trackers a run reports to (train.report_to), through the Hugging Face Trainer's own
integrations: where each writes inside the run folder, the package it needs and the command that
installs it, the settings the training worker gives it, and the command that opens what it wrote.
Light: stdlib only (whether a package is installed is asked of importlib without importing it).

Each tracker writes inside saves/<run>/ unless the user's environment already points it elsewhere
(MLFLOW_TRACKING_URI, WANDB_MODE, TRACKIO_DIR, ... set before the app starts win): the project is
'whetstone' and the run's name is its folder's name.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TrackerName = Literal["tensorboard", "wandb", "mlflow", "trackio"]
PROJECT = "whetstone"


@dataclass(frozen=True)
class Tracker:
    name: str
    label: str
    module: str   # the import the Trainer's integration needs
    install: str  # what `pip install` takes to bring it
    folder: str   # where it writes, inside the run folder


TRACKERS = (
    Tracker("tensorboard", "TensorBoard", "tensorboard", "tensorboard", "tensorboard"),
    Tracker("wandb", "Weights & Biases", "wandb", "wandb", "wandb"),
    Tracker("mlflow", "MLflow", "mlflow", "mlflow-skinny", "mlflow"),
    Tracker("trackio", "Trackio", "trackio", "trackio", "trackio"),
)
BY_NAME = {t.name: t for t in TRACKERS}


def installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(BY_NAME[name].module) is not None
    except (ImportError, ValueError):
        return False


def problems(names: list[str]) -> list[str]:
    """train.report_to problems: each tracker whose package is missing, with the command that installs it."""
    out = []
    for name in dict.fromkeys(names):
        t = BY_NAME.get(name)
        if t is not None and not installed(name):
            out.append(f"train.report_to: {name!r} needs the {t.install} package, which is not installed; "
                       f"run `pip install {t.install}` (in this environment: `.venv/bin/python -m pip install "
                       f"{t.install}`), or untick {t.label}")
    return out


def folder(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / BY_NAME[name].folder


def wandb_logged_in(env: dict | None = None) -> bool:
    """An API key in the environment or in ~/.netrc (what `wandb login` writes)."""
    env = os.environ if env is None else env
    if env.get("WANDB_API_KEY"):
        return True
    netrc = Path(env.get("NETRC", Path.home() / ".netrc")).expanduser()
    try:
        return "api.wandb.ai" in netrc.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False


def environment(run_dir: Path, names: list[str], env: dict | None = None) -> dict[str, str]:
    """The settings the training worker gives the trackers it reports to: each writes inside the run
    folder, under project 'whetstone'. A value already in `env` (the user's own setting) is kept."""
    env = os.environ if env is None else env
    run_dir = Path(run_dir).resolve()
    want: dict[str, str] = {}
    if "tensorboard" in names:
        want["TENSORBOARD_LOGGING_DIR"] = str(folder(run_dir, "tensorboard"))
    if "mlflow" in names:
        want["MLFLOW_TRACKING_URI"] = folder(run_dir, "mlflow").as_uri()
        want["MLFLOW_EXPERIMENT_NAME"] = PROJECT
        want["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 keeps the file store in maintenance mode, still working
    if "wandb" in names:
        want["WANDB_DIR"] = str(run_dir)  # wandb makes its own wandb/ folder inside
        want["WANDB_PROJECT"] = PROJECT
        want["WANDB_MODE"] = "online" if wandb_logged_in(env) else "offline"
    if "trackio" in names:
        want["TRACKIO_DIR"] = str(folder(run_dir, "trackio"))
    return {k: v for k, v in want.items() if not env.get(k)}


def open_command(run_dir: Path, name: str) -> str:
    """The command that shows what a tracker wrote for this run."""
    run = shlex.quote(str(run_dir))
    sub = shlex.quote(str(folder(run_dir, name)))
    if name == "tensorboard":
        return f"tensorboard --logdir {sub}"
    if name == "mlflow":
        return (f"MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {sub}   # the UI needs the full "
                "package: pip install mlflow")
    if name == "wandb":
        return (f"wandb sync {run}/wandb/offline-run-*   # uploads an offline run; a logged-in run is on "
                "wandb.ai already")
    if name == "trackio":
        return f"TRACKIO_DIR={sub} trackio show --project {PROJECT}"
    raise KeyError(name)
