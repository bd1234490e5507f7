"""`python app.py launch-script` (a SLURM file for a cluster) and `identity` (an identity dataset from the
bundled template)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import config as C
from engine.runs import launcher
from engine.runs.paths import LOOPBACK, REPO


def cmd_launch_script(argv: list[str]) -> int:
    import shlex

    from engine.runs import torchrun as cluster_script
    ap = argparse.ArgumentParser(
        prog="python app.py launch-script", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Create the run folder for CONFIG on a cluster and write a ready-to-submit SLURM batch file "
                    "(sbatch FILE), then print the plain torchrun command for each node (for clusters without "
                    "SLURM). The repository and saves folder must be on a disk every node sees.")
    ap.add_argument("config", help="run config YAML, e.g. presets/quickstart.yaml")
    ap.add_argument("--nodes", type=int, required=True, help="machines to run on")
    ap.add_argument("--gpus-per-node", type=int, default=None,
                    help="processes (GPUs) per machine (default: the config's distributed.nproc_per_node, else 8)")
    ap.add_argument("--master-addr", default=None, help="node 0's address for the plain torchrun commands")
    ap.add_argument("--time", default="24:00:00", help="SLURM time limit (default 24:00:00)")
    ap.add_argument("--out", type=Path, default=None, help="where to write the batch file (default: "
                    f"saves/<run>/{cluster_script.SLURM_FILE})")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field, e.g. --set distributed.strategy=fsdp (repeatable)")
    a = ap.parse_args(argv)
    if a.nodes < 1 or (a.gpus_per_node is not None and a.gpus_per_node < 1):
        ap.error("--nodes and --gpus-per-node must be at least 1")
    try:
        cfg = C.load(a.config, a.overrides)
        d = cfg.distributed
        gpus = a.gpus_per_node or (d.nproc_per_node if d.nproc_per_node > 1 else 8)
        cfg = C.replace(C.replace(cfg, "distributed.nnodes", a.nodes), "distributed.nproc_per_node", gpus)
        cfg = C.replace(cfg, "distributed.node_rank", 0)
        if a.master_addr:
            cfg = C.replace(cfg, "distributed.master_addr", a.master_addr)
        if cfg.distributed.strategy == "none":
            cfg = C.replace(cfg, "distributed.strategy", "ddp")
            print("note: distributed.strategy was 'none'; using ddp (set fsdp or deepspeed_zero3 to shard a "
                  "model too big for one GPU)")
        run_dir = launcher.create_run(cfg)
    except (C.ConfigError, launcher.LaunchError) as e:
        print(str(e), file=sys.stderr)
        return 2
    cfg = C.load(run_dir / "config.yaml")
    config_path = run_dir / "config.yaml"
    out = a.out or run_dir / cluster_script.SLURM_FILE
    out.write_text(cluster_script.slurm_script(cfg, config_path, REPO, time_limit=a.time))
    print(f"run folder: {run_dir}\nSLURM batch file: {out}\n  submit with: sbatch {shlex.quote(str(out))}")
    print("\nWithout SLURM, run one command per machine, from the repository folder:")
    for i, cmd in enumerate(cluster_script.torchrun_commands(cfg, config_path)):
        print(f"  node {i}: {shlex.join(cmd)}")
    if cfg.distributed.master_addr in LOOPBACK:
        print("  (replace 127.0.0.1 with node 0's address, or pass --master-addr)")
    return 0


def cmd_identity(argv: list[str]) -> int:
    """Make an identity dataset (and its held-out questions) from the bundled template set."""
    from engine.data import identity
    ap = argparse.ArgumentParser(prog="python app.py identity", description=cmd_identity.__doc__)
    ap.add_argument("--name", required=True, help="the assistant's name, e.g. Aria")
    ap.add_argument("--maker", required=True, help="who made it, e.g. 'Acme Labs'")
    ap.add_argument("--save-as", default="", help="file name without .json (default: identity_<name>)")
    ap.add_argument("--out-dir", type=Path, default=None, help="folder to write to (default: data/uploads)")
    ap.add_argument("--overwrite", action="store_true", help="replace files of the same name")
    a = ap.parse_args(argv)
    try:
        train_path, held_path = identity.save(a.name, a.maker, a.save_as or identity.default_save_as(a.name),
                                              a.out_dir, overwrite=a.overwrite)
    except identity.IdentityError as e:
        print(f"identity: {e}", file=sys.stderr)
        return 2
    train, held = identity.build(a.name, a.maker)
    print(f"wrote {train_path} ({len(train)} rows) and {held_path} ({len(held)} held-out questions)")
    for r in train[:3]:
        print(f"  {r['instruction']} -> {r['output']}")
    print(f"train on it: python app.py train presets/quickstart.yaml --set data.datasets=[{train_path}]")
    return 0
