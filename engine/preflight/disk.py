"""Before Start: what a run will write to its saves folder (its checkpoints, plus the final output) against
the free space there, so a run that cannot fit is refused with the numbers instead of filling the disk an
hour in. Light: from the model's shape (engine.preflight.shape) and its tokenizer files, no ML library.

What one checkpoint holds: the trainable weights (adapters in fp32; the whole model, for full / freeze, at
the training precision), the optimizer's state for them, the tokenizer files, and a few small files. At
most `train.save_total_limit` are kept, but the next one is written whole before the oldest is removed, so
the peak is one more than the limit; the final output (adapter/ or model/) is written with the kept ones.
"""
from __future__ import annotations

import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from engine import config as C
from engine.preflight import memory, shape as model_shape
from engine.runs.paths import saves_dir

SMALL_FILES = 100_000       # trainer_state.json, scheduler.pt, rng_state.pth, training_args.bin, configs, README
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "chat_template.jinja", "added_tokens.json")
TIGHT = 0.8                 # warn when the run would use more than this share of the free space


def _gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


@dataclass
class DiskEstimate:
    checkpoint_bytes: int   # one checkpoint
    kept: int               # checkpoints on disk at once (the limit, or fewer for a short run)
    final_bytes: int        # adapter/ or model/
    free_bytes: int         # free in the saves folder's file system now
    folder: Path

    @property
    def need_bytes(self) -> int:
        """The peak: the kept checkpoints plus the next one being written, or plus the final output."""
        return max((self.kept + 1) * self.checkpoint_bytes, self.kept * self.checkpoint_bytes + self.final_bytes)

    @property
    def fits(self) -> bool:
        return self.need_bytes <= self.free_bytes

    @property
    def tight(self) -> bool:
        return self.need_bytes > TIGHT * self.free_bytes

    def words(self) -> str:
        return (f"the run will write about {_gb(self.need_bytes)} ({self.kept + 1} checkpoints of "
                f"{_gb(self.checkpoint_bytes)} at the peak, or {self.kept} and the final output of "
                f"{_gb(self.final_bytes)}) and {self.folder} has {_gb(self.free_bytes)} free")

    def problem(self) -> Optional[str]:
        """Why Start is refused (the run clearly cannot fit), or None."""
        if self.fits:
            return None
        return (f"output.saves_dir: not enough disk space: {self.words()}. Free some space (old runs, their "
                "checkpoints), lower train.save_total_limit, or set output.saves_dir to a larger disk.")

    def warning(self) -> Optional[str]:
        """A run that fits with little to spare, or None."""
        if not self.fits or not self.tight:
            return None
        return (f"Disk space is tight: {self.words()}. Anything else writing to that disk may fill it; "
                "a checkpoint that does not fit ends the run (Resume continues once there is room).")


def _existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def tokenizer_bytes(name_or_path: str) -> int:
    folder = model_shape.folder_for(name_or_path)
    if folder is None:
        return 0
    return sum((folder / n).stat().st_size for n in TOKENIZER_FILES if (folder / n).is_file())


def training_bytes_per_weight(cfg: C.RunConfig) -> int:
    """Full / freeze train the model's own weights at the training precision: fp32 on a CPU (or when asked),
    else 2 bytes."""
    d = cfg.model.dtype
    if d == "fp32" or (d == "auto" and memory.gpu_total_gib() is None):
        return 4
    return 2


def estimate(cfg: C.RunConfig) -> Optional[DiskEstimate]:
    """What the run will write against the free space, or None when the model is not on this machine yet."""
    shape = model_shape.of_or_none(cfg.model.name_or_path)
    if shape is None:
        return None
    t, ft = cfg.train, cfg.method.finetuning
    trainable = memory.trainable_params(shape, cfg)
    in_model = ft in ("full", "freeze")
    p_bytes = training_bytes_per_weight(cfg) if in_model else 4
    weights = shape.total_params * p_bytes if in_model else trainable * 4
    tok = tokenizer_bytes(cfg.model.name_or_path)
    checkpoint = int(weights + trainable * memory.optimizer_bytes(cfg, p_bytes) + tok + SMALL_FILES)
    kept = t.save_total_limit
    if t.max_steps:  # a short run saves every save_steps and at its end: maybe fewer than the limit
        kept = min(kept, math.ceil(t.max_steps / t.save_steps))
    folder = _existing(saves_dir(cfg.output.saves_dir))
    return DiskEstimate(checkpoint, kept, int(weights + tok + SMALL_FILES), shutil.disk_usage(folder).free, folder)


def check(cfg: C.RunConfig) -> tuple[Optional[str], Optional[str]]:
    """(the problem that refuses Start, the warning shown before it): each None when there is none."""
    try:
        est = estimate(cfg)
    except (OSError, ValueError, KeyError):
        return None, None  # no estimate: the model's files are unreadable, and its own check says so
    if est is None:
        return None, None
    return est.problem(), est.warning()
