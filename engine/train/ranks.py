"""The training worker's side of several processes: where this rank stands, its GPU, events from
ranks other than 0, every rank's memory in rank 0's event, one stop decision for all ranks, and the
Trainer arguments for the chosen strategy (DDP / FSDP2 / DeepSpeed ZeRO through accelerate).

Heavy: torch is imported inside the functions that touch the process group.

How a multi-process run behaves:
  * global rank 0 speaks for the run: it takes the run lock, writes worker.json and every event;
    the other ranks write nothing unless they fail (then one error event that names their rank);
  * each train event carries every rank's memory: rank 0's under the usual names, the others under
    engine.runs.metrics.rank_key (``rss_gib_rank1``), so the UI draws one set of charts;
  * a stop signal reaching any rank stops all of them at the same step (the ranks agree with one
    all-reduce per step), so the checkpoint is written once, at one step.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from engine.config import SHARDED_STRATEGIES as SHARDED, world_size as requested_world
from engine.runs import metrics
from engine.runs.events import EventWriter
from engine.runs.torchrun import needs_launcher


# ---------------------------------------------------------------------------------------------
# Where this process stands (torchrun sets these variables for every rank it starts)
# ---------------------------------------------------------------------------------------------

def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Global rank 0: the one process that writes events, worker.json and the final output."""
    return rank() == 0


# ---------------------------------------------------------------------------------------------
# Strategy -> TrainingArguments
# ---------------------------------------------------------------------------------------------

def backend_for(cfg, cuda: bool) -> str:
    b = cfg.distributed.backend
    return b if b != "auto" else ("nccl" if cuda else "gloo")


def fsdp_config(cfg) -> dict:
    """FSDP2 through accelerate: every decoder layer is one shard unit (the model's _no_split_modules);
    the final save gathers a full state dict so the adapter / model folder is the standard format."""
    return {"version": 2, "auto_wrap_policy": "TRANSFORMER_BASED_WRAP", "reshard_after_forward": True,
            "state_dict_type": "FULL_STATE_DICT", "cpu_ram_efficient_loading": False,
            "cpu_offload": bool(cfg.distributed.cpu_offload)}


def deepspeed_config(cfg) -> dict:
    """A ZeRO-2 / ZeRO-3 config; "auto" values are filled in by the Trainer from the train section, so
    batch size, accumulation, clipping and precision are never stated twice."""
    stage = 3 if cfg.distributed.strategy == "deepspeed_zero3" else 2
    zero: dict[str, Any] = {"stage": stage, "overlap_comm": True, "contiguous_gradients": True,
                            "reduce_bucket_size": "auto"}
    if stage == 2:
        zero.update(allgather_partitions=True, allgather_bucket_size=int(5e8), reduce_scatter=True)
    else:
        zero.update(stage3_prefetch_bucket_size="auto", stage3_param_persistence_threshold="auto",
                    stage3_max_live_parameters=int(1e9), stage3_max_reuse_distance=int(1e9),
                    sub_group_size=int(1e9), stage3_gather_16bit_weights_on_model_save=True)
    if cfg.distributed.cpu_offload:
        zero["offload_optimizer"] = {"device": "cpu", "pin_memory": True}
        if stage == 3:
            zero["offload_param"] = {"device": "cpu", "pin_memory": True}
    return {"train_batch_size": "auto", "train_micro_batch_size_per_gpu": "auto",
            "gradient_accumulation_steps": "auto", "gradient_clipping": "auto",
            "zero_allow_untested_optimizer": True, "bf16": {"enabled": "auto"},
            "fp16": {"enabled": "auto", "loss_scale": 0, "initial_scale_power": 16, "loss_scale_window": 1000,
                     "hysteresis": 2, "min_loss_scale": 1},
            "zero_optimization": zero}


def trainer_kwargs(cfg, cuda: bool) -> dict:
    """Extra TrainingArguments for the chosen strategy ({} for a plain one-process run)."""
    d = cfg.distributed
    if not needs_launcher(cfg) and world_size() == 1:
        return {}
    kw: dict[str, Any] = {"ddp_backend": backend_for(cfg, cuda)}
    if d.strategy in ("ddp", "none"):
        kw["ddp_find_unused_parameters"] = False  # frozen weights have no grads; LoRA / freeze use all others
    elif d.strategy == "fsdp":
        kw["fsdp"] = True  # transformers 5: on/off here, everything else in fsdp_config
        kw["fsdp_config"] = fsdp_config(cfg)
    else:
        kw["deepspeed"] = deepspeed_config(cfg)
    return kw


def gathers_to_rank0_for_save(cfg) -> bool:
    """FSDP / DeepSpeed hold shards: the final save is a collective every rank takes part in."""
    return cfg.distributed.strategy in SHARDED


# ---------------------------------------------------------------------------------------------
# In the worker: device, events, memory from every rank, one stop decision
# ---------------------------------------------------------------------------------------------

def mismatch_note(cfg) -> str | None:
    """Said when the worker was started by hand with a different number of processes than asked for."""
    want, have = requested_world(cfg), world_size()
    if want == have:
        return None
    return (f"note: the config asks for {want} process(es) but this worker runs as {have}; the effective batch "
            "changes accordingly. `python app.py train` starts the right number through torchrun.")


def prepare_rank() -> None:
    """Pin this rank to its GPU before any model is loaded, and refuse more ranks than GPUs."""
    import torch
    if not torch.cuda.is_available() or world_size() == 1:
        return
    n = torch.cuda.device_count()
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if local_world > n:
        raise RuntimeError(f"distributed.nproc_per_node asks for {local_world} processes on this machine, which "
                           f"shows {n} GPU(s); set it to at most {n}.")
    torch.cuda.set_device(local_rank())


class RankEvents:
    """Events of a rank other than 0: progress stays silent (rank 0 speaks for the run); a failure of
    this rank is still written, once, naming the rank, so the UI can say what went wrong."""

    def __init__(self, path: Path, rank_: int):
        self.path, self.rank, self._w = Path(path), rank_, None

    def _writer(self) -> EventWriter:
        self._w = self._w or EventWriter(self.path)
        return self._w

    def write(self, kind: str, step: int = 0, **fields: Any) -> dict:
        if kind != "error":
            return {}
        return self._writer().write(kind, step, rank=self.rank, **fields)

    def status(self, status: str, step: int = 0, **fields: Any) -> dict:
        if status != "failed":
            return {}
        return self._writer().write("status", step, status=status, rank=self.rank, **fields)

    def error(self, message: str, step: int = 0, **fields: Any) -> dict:
        return self.write("error", step, message=message, **fields)

    def close(self) -> None:
        if self._w:
            self._w.close()


def events_for_rank(path: Path):
    return EventWriter(path) if is_main() else RankEvents(path, rank())


def _dist():
    import torch.distributed as dist
    return dist if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1 else None


def gather_memory(mem: dict) -> dict:
    """Every rank's memory in one dict, keyed by engine.runs.metrics.rank_key (rank 0's under the plain
    names). A collective: every rank must call it at the same point (the Trainer's on_log)."""
    dist = _dist()
    if dist is None:
        return mem
    everyone: list = [None] * dist.get_world_size()
    dist.all_gather_object(everyone, mem)
    return {metrics.rank_key(k, r): v for r, m in enumerate(everyone) for k, v in (m or {}).items()}


def any_rank(flag: bool) -> bool:
    """True on every rank when it is true on any: one stop decision, taken at the same step everywhere."""
    dist = _dist()
    if dist is None:
        return flag
    import torch
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else "cpu"
    t = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()
