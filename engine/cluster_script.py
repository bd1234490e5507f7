"""The same run config on N machines: a ready-to-submit SLURM batch file, and the plain torchrun
command for each machine when there is no SLURM.

Light module (stdlib only). The worker is unchanged: on every node torchrun starts
`python -m engine.train --config saves/<run>/config.yaml`; the nodes meet through torchrun's c10d
rendezvous on the first node; global rank 0 writes the run's events and checkpoints into the run
folder, which must be on a filesystem every node sees (the usual shared home or project disk).
"""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

from engine import distributed

SLURM_FILE = "slurm.sbatch"


def torchrun_commands(cfg, config_path: Path, python: str = sys.executable) -> list[list[str]]:
    """One argv per node (node_rank 0 first): run each on its machine, in the repository folder."""
    d = cfg.distributed
    return [[python, "-m", "torch.distributed.run",
             *distributed.torchrun_args(cfg, node_rank=i, endpoint=f"{d.master_addr}:{d.master_port}"),
             "-m", "engine.train", "--config", str(config_path)]
            for i in range(d.nnodes)]


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
    per_node = [python, "-m", "torch.distributed.run",
                *distributed.torchrun_args(cfg, node_rank="$SLURM_NODEID",
                                           endpoint="$MASTER_ADDR:$MASTER_PORT", run_id="$SLURM_JOB_ID"),
                "-m", "engine.train", "--config", str(config_path)]
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
