"""The shared run state (DESIGN.md contract 2): the config being edited plus the run being watched.

Every tab writes into one `RunState`. Handlers are plain functions that return a new state with a
new config (via `engine.config.replace`); nothing is mutated in place. The run state is also what
starts, stops and resumes the worker.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from engine import config as C
from engine.preflight import disk
from engine.runs import launcher
from engine.runs.paths import PRESETS_DIR, saves_dir

DEFAULT_PRESET = "quickstart"


@dataclass(frozen=True)
class RunState:
    config: C.RunConfig
    run_dir: Optional[str] = None  # the run this browser session is watching (the handle of the current run)
    source: Optional[str] = None  # the YAML the config was loaded from (a preset or a run's config.yaml)


def saves_path(state: RunState) -> Path:
    return saves_dir(state.config.output.saves_dir)


def initial(saves: str) -> RunState:
    """The state a new browser session starts from: the quickstart preset when it exists, else defaults."""
    preset = PRESETS_DIR / f"{DEFAULT_PRESET}.yaml"
    if preset.is_file():
        try:
            cfg = C.load(preset, check_files=False)
            return RunState(config=_in_saves(cfg, saves), source=str(preset))
        except C.ConfigError:
            pass
    return RunState(config=_in_saves(C.RunConfig(), saves))


def _in_saves(cfg: C.RunConfig, saves: str) -> C.RunConfig:
    """Runs started from this app go to the app's saves folder, whatever the loaded YAML said."""
    return C.replace(cfg, "output.saves_dir", saves)


def set_field(state: RunState, key: str, value: Any) -> RunState:
    """One field changed by a widget. Changing the method also keeps quantisation consistent with it."""
    cfg = C.replace(state.config, key, value)
    if key == "method.finetuning":
        if value == "qlora":
            cfg = C.replace(cfg, "model.quantization", "4bit")
        elif value in ("full", "freeze") or (value == "lora" and cfg.model.quantization == "4bit"
                                             and state.config.method.finetuning == "qlora"):
            cfg = C.replace(cfg, "model.quantization", "none")
    return dataclasses.replace(state, config=cfg)


def with_config(state: RunState, cfg: C.RunConfig, source: Optional[str]) -> RunState:
    """A whole config loaded into the tabs (a preset or a past run's config)."""
    return dataclasses.replace(state, config=_in_saves(cfg, state.config.output.saves_dir), source=source)


def watching(state: RunState, run_dir: Optional[Path]) -> RunState:
    return dataclasses.replace(state, run_dir=str(run_dir) if run_dir else None)


def problems(state: RunState) -> list[str]:
    """Everything Start would refuse, listed before the user clicks it."""
    try:
        C.from_dict(C.to_dict(state.config))
    except C.ConfigError as e:
        return e.problems
    no_room, _ = disk.check(state.config)
    return [no_room] if no_room else []


TRUST_REMOTE_CODE_WARNING = ("model.trust_remote_code is on: Python files that ship with this model will run "
                             "inside the training worker with your user's rights (files, keys, network). Leave it "
                             "off unless you have read that code or trust its authors.")


def warnings(state: RunState) -> list[str]:
    """Settings that are allowed but risky, said out loud before Start."""
    out = []
    if state.config.model.trust_remote_code:
        out.append(TRUST_REMOTE_CODE_WARNING)
    _, tight = disk.check(state.config)
    if tight:
        out.append(tight)
    from engine.config import rl
    out += rl.warnings(state.config)  # a Python reward file runs as code in the worker
    return out


def start(state: RunState) -> RunState:
    """Check the settings and the data, write saves/<run>/config.yaml and launch the worker. Raises ConfigError
    or LaunchError (bad rows, another run going)."""
    cfg = C.replace(state.config, "output.run_name", state.config.output.run_name.strip())
    run_dir = launcher.start(cfg)
    return dataclasses.replace(state, run_dir=str(run_dir))


def stop(state: RunState) -> bool:
    """Ask the watched run's worker to checkpoint and exit. False when nothing was running."""
    return bool(state.run_dir) and launcher.stop(Path(state.run_dir))


def resume(state: RunState) -> RunState:
    """Start the watched run's worker again from its last checkpoint. Raises LaunchError."""
    if not state.run_dir:
        raise launcher.LaunchError("Pick a run in the list first, then Resume it.")
    launcher.resume(Path(state.run_dir))
    return state


def active_run(state: RunState) -> Optional[Path]:
    """The run whose worker is alive right now, if any (what a refreshed page re-attaches to)."""
    return launcher.active_run(saves_path(state))
