"""The distributed section of a run config: several processes or machines through torchrun (DDP, FSDP,
DeepSpeed), and its checks against itself and the method. Light: stdlib only. What this machine can run
is checked at launch (engine.runs.torchrun)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.config.method import quantization
from engine.config.schema import F

Strategy = Literal["none", "ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"]
Backend = Literal["auto", "nccl", "gloo"]


@dataclass
class DistributedConfig:
    nproc_per_node: int = F(1, "Training processes on each machine: one per GPU (on CPU, each process is a "
                               "replica using the gloo backend).", min=1, max=64)
    nnodes: int = F(1, "Machines taking part. More than 1 needs a cluster: see `python app.py launch-script`.",
                    min=1, max=4096)
    strategy: Strategy = F("none",
                           "How the processes share the work. none: one process; ddp: every process holds the "
                           "whole model and they average gradients (fastest when the model fits one GPU); fsdp: "
                           "weights, gradients and optimizer state sharded across GPUs (PyTorch FSDP2); "
                           "deepspeed_zero2: optimizer state and gradients sharded; deepspeed_zero3: weights "
                           "sharded too (largest models; needs the deepspeed package).", widget="radio")
    cpu_offload: bool = F(False, "Keep sharded optimizer state (and, for fsdp / zero3, weights) in CPU memory: "
                                 "fits bigger models, trains slower. fsdp and deepspeed only.")
    backend: Backend = F("auto", "Communication backend: auto = nccl on GPUs, gloo on CPU.", widget="radio")
    master_addr: str = F("127.0.0.1", "Address of the machine with node_rank 0 (several machines only).")
    master_port: int = F(29500, "Free TCP port on master_addr for the rendezvous (several machines only).",
                         min=1024, max=65535)
    node_rank: int = F(0, "This machine's index, 0 .. nnodes-1, when starting one machine by hand "
                          "(the SLURM script sets it per node).", min=0)


SHARDED_STRATEGIES = ("fsdp", "deepspeed_zero2", "deepspeed_zero3")


def world_size(cfg) -> int:
    """Processes the distributed section asks for, over every machine."""
    return cfg.distributed.nproc_per_node * cfg.distributed.nnodes


def distributed_problems(cfg) -> list[str]:
    """The distributed section against itself and the method (this machine is checked at launch)."""
    d, p = cfg.distributed, []
    world = world_size(cfg)
    if world > 1 and d.strategy == "none":
        p.append(f"distributed.strategy: 'none' runs one process, but {world} are asked for; pick ddp "
                 "(each GPU holds the whole model), fsdp, deepspeed_zero2 or deepspeed_zero3 (they shard it)")
    if d.node_rank >= d.nnodes:
        p.append(f"distributed.node_rank: {d.node_rank} must be below distributed.nnodes ({d.nnodes})")
    if d.cpu_offload and d.strategy not in SHARDED_STRATEGIES:
        p.append(f"distributed.cpu_offload: only fsdp and deepspeed can offload to CPU, not {d.strategy!r}")
    if quantization(cfg) != "none" and d.strategy in ("fsdp", "deepspeed_zero3"):
        p.append(f"distributed.strategy: {d.strategy} shards the weights, which it cannot do with "
                 "bitsandbytes-quantised ones here; use ddp or deepspeed_zero2 with qlora, or lora without "
                 "quantization")
    return p
