"""How long a run trains, resolved from the data's size: epochs, optimizer steps and warm-up steps.

A preset can state its intent (train.target_steps: "about N optimizer steps", train.min_epochs: "at least
E passes") instead of a fixed number of epochs, so a 40-row and a 300-row dataset both get the steps they
need. An explicit train.max_steps or train.epochs always wins: "explicit" is "not empty", so a YAML or a
widget that writes a number, even the old default 3, is obeyed.

`resolve` is the rule (one function: the training worker, the CLI's printout and the UI before Start all
use it); `plan` counts a config's rows without a tokenizer (seconds, no torch) and resolves them.
Light: stdlib and engine.data.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

from engine.config import RunConfig, TrainConfig, world_size
from engine.config.rl import RL_STAGES

DEFAULT_EPOCHS = 3.0  # when neither epochs, max_steps nor target_steps is set


@dataclass(frozen=True)
class Schedule:
    rows: Optional[int]              # training rows (yours + general rows mixed in); None = unknown before the run
    batch: int                       # rows per optimizer step: batch_size x grad_accum x processes
    steps_per_epoch: Optional[int]
    epochs: Optional[float]
    total_steps: Optional[int]
    warmup_steps: Optional[int]
    rule: str                        # which setting decided: max_steps | epochs | target_steps | default
    general_rows: int = 0            # of `rows`, the general rows retain mixes in
    note: str = ""                   # why rows are unknown, or what they are counted before

    def describe(self) -> str:
        """One line, as the CLI prints it and the UI shows it before Start."""
        why = {"max_steps": "train.max_steps set", "epochs": "train.epochs set",
               "default": f"{DEFAULT_EPOCHS:g} epochs (train.epochs, max_steps and target_steps empty)"}.get(self.rule)
        if self.rule == "target_steps":
            why = "train.target_steps over your rows, in whole epochs"
        if self.rows is None:
            head = (f"{self.total_steps} optimizer steps" if self.rule == "max_steps" else
                    f"{self.epochs:g} epochs" if self.epochs is not None else
                    "steps resolved when the run has read its data")
            return f"schedule: {head} ({why}){'; ' + self.note if self.note else ''}"
        mixed = f"{self.rows - self.general_rows} + {self.general_rows} general" if self.general_rows else self.rows
        return (f"schedule: {mixed} rows / {self.batch} per step = {self.steps_per_epoch} steps per epoch "
                f"x {self.epochs:g} epochs = {self.total_steps} optimizer steps, {self.warmup_steps} warm-up ({why})"
                + (f"; {self.note}" if self.note else ""))


def steps_per_epoch(rows: int, batch_size: int, grad_accum: int, world: int = 1) -> int:
    """Optimizer steps in one pass, as the Hugging Face Trainer counts them (last partial batch included)."""
    batches = math.ceil(rows / (batch_size * world))
    return max(1, math.ceil(batches / grad_accum))


def resolve(t: TrainConfig, rows: Optional[int], world: int = 1, general_rows: int = 0, note: str = "") -> Schedule:
    """The schedule for `rows` training rows under the train section `t`."""
    batch = t.batch_size * t.grad_accum * world
    rule = ("max_steps" if t.max_steps else "epochs" if t.epochs is not None else
            "target_steps" if t.target_steps else "default")
    if rows is None:
        total = t.max_steps if rule == "max_steps" else None
        epochs = t.epochs if rule == "epochs" else DEFAULT_EPOCHS if rule == "default" else None
        warm = math.ceil(total * t.warmup_ratio) if total else None
        return Schedule(None, batch, None, epochs, total, warm, rule, general_rows, note)
    spe = steps_per_epoch(max(rows, 1), t.batch_size, t.grad_accum, world)
    if rule == "max_steps":
        total, epochs = t.max_steps, round(t.max_steps / spe, 2)
    elif rule in ("epochs", "default"):
        epochs = t.epochs if rule == "epochs" else DEFAULT_EPOCHS
        total = max(1, math.ceil(epochs * spe))
    else:  # epochs from your rows alone: general rows mixed in by retain ride along, they do not cut epochs
        wanted = t.target_steps / steps_per_epoch(max(rows - general_rows, 1), t.batch_size, t.grad_accum, world)
        epochs = float(max(1, round(wanted))) if wanted >= 1 else round(wanted, 2)  # whole epochs when one fits
        epochs = max(epochs, t.min_epochs)
        total = max(1, math.ceil(epochs * spe))
    warm = math.ceil(total * t.warmup_ratio) if t.warmup_ratio < 1 else int(t.warmup_ratio)
    return Schedule(rows, batch, spe, epochs, total, warm, rule, general_rows, note)


def general_rows(cfg: RunConfig, task_rows: int, available: int) -> int:
    """General rows retain mixes in for `task_rows` rows of the user's data (sft only)."""
    if cfg.retain.method == "none" or cfg.method.stage != "sft" or cfg.retain.share <= 0:
        return 0
    return min(available, int(round(cfg.retain.share * task_rows)))


def _usable_rows(cfg: RunConfig, name: str) -> tuple[Optional[int], str]:
    """Rows of one dataset that pass the checks (no tokenizer: before the cutoff check), or (None, why)."""
    from engine.data import checks, preview
    from engine.data import names as dataset_names
    from engine.data.files import DataError
    try:
        if dataset_names.resolve(name)[0] == "hub":
            return None, f"{name} is on the hub: its rows are counted when the run reads it"
        loaded = preview.load(name, cfg)
    except (DataError, ValueError, OSError) as e:
        return None, str(e)
    items = checks.examine(loaded, None, cfg.data.cutoff_len, cfg.data.max_samples)
    return sum(1 for it in items if it.problem is None), ""


def plan(cfg: RunConfig) -> Schedule:
    """The schedule the worker will resolve, from rows counted here (without a tokenizer: rows that turn out
    longer than cutoff_len and are dropped make the real count a little smaller)."""
    rows, notes = 0, []
    for name in cfg.data.datasets:
        n, why = _usable_rows(cfg, name)
        if n is None:
            return resolve(cfg.train, None, world_size(cfg), note=why)
        rows += n
    if cfg.method.stage == "kto":
        rows *= 2  # each pair trains as one desirable and one undesirable example
    if cfg.data.val_size > 0 and not cfg.data.eval_datasets and rows > 1:
        rows -= max(1, min(int(round(rows * cfg.data.val_size)), rows - 1))
    if cfg.method.stage in RL_STAGES:  # grpo / ppo: each prompt is sampled method.rl.generations times
        rows *= cfg.method.rl.generations
    extra = 0
    if general_rows(cfg, rows, 1 << 30):
        available, why = _usable_rows(cfg, cfg.retain.dataset)
        if available is None:
            notes.append(f"retain: {why}")
        else:
            extra = general_rows(cfg, rows, available)
    return resolve(cfg.train, rows + extra, world_size(cfg), general_rows=extra, note="; ".join(notes))
