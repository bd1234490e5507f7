"""Command lines for several processes: torchrun on this machine, one torchrun per machine, and a
SLURM batch file for a cluster; and whether this machine can run the config's distributed section.

Nothing home-made: torchrun starts the processes, the Hugging Face Trainer (through accelerate) does
DDP, FSDP2 or DeepSpeed (engine.train.ranks sets which). Light: stdlib only; the launcher and the UI
import it. The worker is unchanged under torchrun: `python -m engine.train --config <run>/config.yaml`
on every rank; global rank 0 writes the run's events, checkpoints and output, into a run folder that
must be on a filesystem every node sees.
"""
from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from engine.config import SHARDED_STRATEGIES as SHARDED, world_size
from engine.runs.paths import LOOPBACK

# torchrun waits this long for the ranks to save their stop checkpoint before it SIGKILLs them.
SHUTDOWN_GRACE_S = 120


def needs_launcher(cfg) -> bool:
    """More than one process, or a sharding engine (FSDP / DeepSpeed want torchrun even for one)."""
    return world_size(cfg) > 1 or cfg.distributed.strategy != "none"


# ---------------------------------------------------------------------------------------------
# This machine: can it run the distributed section? (the config alone: engine.config.distributed)
# ---------------------------------------------------------------------------------------------

def visible_gpus() -> int:
    """CUDA GPUs this machine offers, without importing torch (CUDA_VISIBLE_DEVICES, else nvidia-smi)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [x for x in env.split(",") if x.strip()]
        return 0 if not ids or ids[0].strip() == "-1" else len(ids)
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


def launch_problems(cfg, gpus: int | None = None) -> list[str]:
    """What stops this config from starting on this machine (GPU count, packages, rendezvous)."""
    d, p = cfg.distributed, []
    if not needs_launcher(cfg):
        return p
    gpus = visible_gpus() if gpus is None else gpus
    if gpus == 0:
        if d.strategy in SHARDED:
            p.append(f"distributed.strategy: {d.strategy} needs CUDA GPUs and none are visible here; on CPU "
                     "use ddp (gloo backend)")
        if d.backend == "nccl":
            p.append("distributed.backend: nccl needs CUDA GPUs and none are visible here; use auto or gloo")
    elif d.nproc_per_node > gpus and d.backend != "gloo":
        p.append(f"distributed.nproc_per_node: {d.nproc_per_node} processes but this machine shows {gpus} GPU(s); "
                 f"set it to at most {gpus} (one process per GPU)")
    if d.strategy.startswith("deepspeed") and importlib.util.find_spec("deepspeed") is None:
        p.append(f"distributed.strategy: {d.strategy} needs the deepspeed package: pip install deepspeed")
    if d.nnodes > 1 and d.master_addr in LOOPBACK:
        p.append("distributed.master_addr: with several machines this must be node 0's address that the "
                 "others can reach, not loopback; or submit with `python app.py launch-script`")
    return p


# ---------------------------------------------------------------------------------------------
# The launcher command
# ---------------------------------------------------------------------------------------------

def torchrun_args(cfg, node_rank: int | str | None = None, endpoint: str | None = None,
                  run_id: str | None = None, nproc: int | str | None = None,
                  nnodes: int | str | None = None) -> list[str]:
    """torchrun's own arguments. One machine: --standalone (a free local port, nothing to collide with).
    Several: c10d rendezvous at the endpoint, every node naming the same run id."""
    d = cfg.distributed
    nnodes = d.nnodes if nnodes is None else nnodes
    args = [f"--nnodes={nnodes}", f"--nproc_per_node={d.nproc_per_node if nproc is None else nproc}"]
    if str(nnodes) == "1":
        args.append("--standalone")
    else:
        args += [f"--node_rank={d.node_rank if node_rank is None else node_rank}", "--rdzv_backend=c10d",
                 f"--rdzv_endpoint={endpoint or f'{d.master_addr}:{d.master_port}'}",
                 f"--rdzv_id={run_id or cfg.output.run_name or 'whetstone'}"]
    return args + [f"--shutdown-timeout={SHUTDOWN_GRACE_S}"]


def under_torchrun(python: str, torchrun: list[str], config_path: Path) -> list[str]:
    """The unchanged training worker started by torchrun with these arguments of its own."""
    return [python, "-m", "torch.distributed.run", *torchrun, "-m", "engine.train", "--config", str(config_path)]


def launch_command(cfg, config_path: Path, python: str = sys.executable) -> list[str]:
    """The argv that runs the unchanged worker under torchrun on this machine (no shell). Each rank's output
    goes to the run's stdout.log with a `[default<rank>]:` prefix, and whole to rank-logs/.../<rank>/."""
    logs = Path(config_path).parent / "rank-logs"
    return under_torchrun(python, [*torchrun_args(cfg), "--tee=3", f"--log-dir={logs}"], config_path)


def worker_command(cfg, config_path: Path) -> list[str]:
    """The training worker's argv: plain Python for one process, torchrun for several (or FSDP / DeepSpeed)."""
    if needs_launcher(cfg):
        return launch_command(cfg, config_path)
    return [sys.executable, "-m", "engine.train", "--config", str(config_path)]


# ---------------------------------------------------------------------------------------------
# A cluster: one torchrun per machine, or a SLURM batch file
# ---------------------------------------------------------------------------------------------

SLURM_FILE = "slurm.sbatch"


def torchrun_commands(cfg, config_path: Path, python: str = sys.executable) -> list[list[str]]:
    """One argv per node (node_rank 0 first): run each on its machine, in the repository folder."""
    d = cfg.distributed
    return [under_torchrun(python, torchrun_args(cfg, node_rank=i, endpoint=f"{d.master_addr}:{d.master_port}"),
                           config_path) for i in range(d.nnodes)]


def slurm_script(cfg, config_path: Path, repo: Path, python: str = sys.executable,
                 time_limit: str = "24:00:00") -> str:
    """An sbatch file: one srun task per node, each running torchrun with this node's rank.

    SLURM sends SIGTERM two minutes before the time limit (and on scancel); every rank then saves a
    checkpoint at the same step, so submitting the same file again resumes the run.
    """
    d = cfg.distributed
    run = cfg.output.run_name or "whetstone"
    run_dir = Path(config_path).parent
    # Expanded on each node by that node's shell ($SLURM_NODEID differs per node), hence bash -c '...'.
    args = torchrun_args(cfg, node_rank="$SLURM_NODEID", endpoint="$MASTER_ADDR:$MASTER_PORT", run_id="$SLURM_JOB_ID")
    per_node = under_torchrun(python, args, config_path)
    inner = " ".join(a if a.startswith("--") and "$" in a else shlex.quote(a) for a in per_node)
    gpus = f"#SBATCH --gpus-per-node={d.nproc_per_node}\n" if d.backend != "gloo" else ""
    return f"""#!/bin/bash
# Whetstone run {run}: {d.nnodes} node(s) x {d.nproc_per_node} process(es), strategy {d.strategy}.
# Submit with:  sbatch {shlex.quote(str(run_dir / SLURM_FILE))}
# Follow with:  tail -f {shlex.quote(str(run_dir / 'events.jsonl'))}   (or open the run in the web UI)
#SBATCH --job-name=whetstone-{run}
#SBATCH --nodes={d.nnodes}
#SBATCH --ntasks-per-node=1
{gpus}#SBATCH --time={time_limit}
#SBATCH --signal=TERM@120
#SBATCH --output={run_dir}/slurm-%j.out
set -euo pipefail

# The first node of the allocation hosts the rendezvous.
export MASTER_ADDR=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)
export MASTER_PORT={d.master_port}
export PYTHONUNBUFFERED=1
cd {shlex.quote(str(repo))}

srun --kill-on-bad-exit=1 --ntasks-per-node=1 bash -c {shlex.quote(inner)}
"""
