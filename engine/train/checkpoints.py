"""Checkpoints that are either whole or absent, whichever Trainer class runs (transformers or trl).

The Hugging Face Trainer writes `checkpoint-N/` file by file in place, so a full disk, a file-size
limit or a kill in the middle of a save leaves a half-written folder that looks like a checkpoint.
`atomic(TrainerClass)` saves into `checkpoints/.saving-checkpoint-N/checkpoint-N/`, flushes every
file to disk, renames the folder to `checkpoints/checkpoint-N` (engine.runs.atomic.publish: one atomic
rename on the same file system), and only then rotates old checkpoints away. A save that fails part-way
leaves the previous checkpoints untouched and removes its own half-written folder at once (a full disk
gets its room back, so the error event can be written); the next worker on the run sweeps any leftover
`.saving-*` folder (a killed save).

Heavy (transformers).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

from engine.runs.atomic import STAGING_PREFIX, publish
from engine.runs.failures import disk_full, is_disk_full
from engine.runs.store import checkpoints


def tree_bytes(folder: Path) -> int:
    """Bytes of the files under a folder (0 when it is gone)."""
    total = 0
    for root, _dirs, names in os.walk(folder):
        for n in names:
            try:
                total += os.path.getsize(os.path.join(root, n))
            except OSError:
                pass
    return total


def sweep_staging(checkpoints_dir: Path) -> None:
    """Remove what an interrupted save left behind (never a published checkpoint)."""
    if checkpoints_dir.is_dir():
        for p in checkpoints_dir.iterdir():
            if p.name.startswith(STAGING_PREFIX):
                shutil.rmtree(p, ignore_errors=True)


def atomic(base_cls: type) -> type:
    """A subclass of any Trainer class (transformers or trl) whose checkpoints appear whole or not at all."""

    class AtomicCheckpoints(base_cls):

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._staging_root: str | None = None
            if self.args.should_save:
                sweep_staging(Path(self.args.output_dir))

        def _get_output_dir(self, trial) -> str:
            return self._staging_root or super()._get_output_dir(trial)

        def _save_checkpoint(self, model, trial) -> None:
            final_root = Path(super()._get_output_dir(trial))
            name = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            staging = final_root / f"{STAGING_PREFIX}{name}"
            if self.args.should_save:
                shutil.rmtree(staging, ignore_errors=True)
            self.accelerator.wait_for_everyone()
            self._staging_root = str(staging)
            try:
                super()._save_checkpoint(model, trial)  # writes staging/checkpoint-N, file by file
            except BaseException as e:
                if self.args.should_save:
                    room = Path(final_root)
                    written = tree_bytes(staging)
                    shutil.rmtree(staging, ignore_errors=True)  # first: the disk gets its room back
                    if is_disk_full(e):
                        last = checkpoints(room.parent)
                        needed = tree_bytes(Path(last[-1])) if last else written
                        raise disk_full(f"checkpoint-{self.state.global_step}", max(needed, written),
                                        shutil.disk_usage(room).free, room,
                                        Path(last[-1]).name if last else None, at_least=not last) from e
                raise
            finally:
                self._staging_root = None
            self.accelerator.wait_for_everyone()  # every rank's shards are written before the rename
            if self.args.should_save:
                publish(staging / name, final_root / name)
                shutil.rmtree(staging, ignore_errors=True)
                rotate_checkpoints(output_dir=str(final_root), save_total_limit=self.args.save_total_limit,
                                   best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)
            self.accelerator.wait_for_everyone()

    AtomicCheckpoints.__name__ = f"Atomic{base_cls.__name__}"
    return AtomicCheckpoints
