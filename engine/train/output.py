"""The run's final output: adapter/ (peft or bottleneck adapters) or model/ (full / freeze), with the
tokenizer (and so the chat template used in training), the exact config and the resolved values
beside the weights; built in a temporary folder and published whole. Heavy."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from engine import config as C
from engine.modeling.adapters import is_adapter, save_kwargs
from engine.runs.atomic import publish
from engine.runs.failures import disk_full, is_disk_full
from engine.runs.store import checkpoints
from engine.train.checkpoints import tree_bytes
from engine.train import ranks as distributed


def save_final(trainer, tokenizer, cfg: C.RunConfig, run_dir: Path, resolved: dict) -> Path:
    """Write the trained weights. One process writes them itself; under FSDP / DeepSpeed every rank joins
    the Trainer's gathering save (a collective) and rank 0 completes the folder."""
    model = trainer.model
    name = "adapter" if is_adapter(model) else "model"
    tmp, final = run_dir / f".tmp-{name}", run_dir / name
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    try:
        if distributed.gathers_to_rank0_for_save(cfg):
            distributed.barrier()
            trainer.save_model(str(tmp))  # gathers a full state dict; only rank 0 writes
        elif distributed.is_main():
            model.save_pretrained(tmp, safe_serialization=True, **save_kwargs(model, run_dir))
        if distributed.is_main():
            tokenizer.save_pretrained(tmp)  # carries the chat template used in training
            C.save(cfg, tmp / "whetstone_config.yaml")
            (tmp / "whetstone_resolved.json").write_text(json.dumps(resolved, indent=1, default=str))
            publish(tmp, final)
    except BaseException as e:
        if not distributed.is_main():
            raise
        written = tree_bytes(tmp)
        shutil.rmtree(tmp, ignore_errors=True)  # first: the disk gets its room back
        if is_disk_full(e):
            last = checkpoints(run_dir)
            raise disk_full(f"the final {name}", written, shutil.disk_usage(run_dir).free, run_dir,
                            Path(last[-1]).name if last else None, at_least=True) from e
        raise
    return final
