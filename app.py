"""Whetstone: `python app.py` serves the workbench on 127.0.0.1:7860; subcommands run the same jobs
headless.

  python app.py                                  # the web UI
  python app.py train presets/quickstart.yaml [--set train.max_steps=20 ...]
  python app.py train --resume saves/<run>       # continue a stopped or failed run
  python app.py train --help                     # every config field, its type, default and help
  python app.py chat saves/<run> [--base]       # talk to a run in the terminal (base model beside it)
  python app.py chat saves/<run>/merged/gguf/<run>-q4_k_m.gguf   # a GGUF file in llama.cpp
  python app.py export saves/<run> [--dtype fp16] [--gguf q8_0]   # merged folder (+ GGUF, Modelfile)
  python app.py launch-script CONFIG --nodes 4 --gpus-per-node 8   # a SLURM file for a cluster
  python app.py identity --name Aria --maker "Acme Labs"         # an identity dataset (+ held-out questions)
  python app.py sweep CONFIG --grid train.learning_rate=1e-4,3e-4 --grid method.lora.rank=8,16
  python app.py compare saves/a saves/b ...      # or a sweep's name: the table, best run marked
  python app.py queue [cancel NAME | gpus 0,1,2,3]   # the run queue in saves/
  python app.py convert THEIR.yaml -o mine.yaml  # a LLaMA-Factory config as a Whetstone one (train takes theirs too)

This module never imports torch: the UI process stays light, the work runs in worker processes.
"""
from __future__ import annotations

import argparse
import sys
import time
import typing
from pathlib import Path

from engine import config as C
from engine.preflight import schedule
from engine.runs import launcher, report
from engine.runs.events import EVENTS_FILE, EventReader
from engine.runs.paths import LOOPBACK, REPO
from engine.runs.processes import wait_for_exit, worker_alive
from engine.runs.progress import Progress


def _progress(run_dir: Path, offset: int = 0) -> int:
    """Follow the worker's events (from byte `offset`: a resume's own, not the last attempt's end) with a terminal
    progress bar until it ends and its process has exited; Ctrl-C stops it cleanly."""
    from tqdm import tqdm
    reader = EventReader(run_dir / EVENTS_FILE, offset)
    state = Progress()
    bar = tqdm(total=None, unit="step", dynamic_ncols=True, desc=run_dir.name)
    try:
        while True:
            for e in reader.read_new():
                state.add([e])
                kind = e.get("kind")
                if kind == "status":
                    if state.total_steps and bar.total != state.total_steps:
                        bar.total = state.total_steps
                        bar.refresh()
                    if state.status == "loading":
                        bar.set_postfix_str(state.detail)
                    if e.get("what") == "report card":
                        bar.write(f"report card: answering the held-out questions of {e.get('held_out')} ...")
                elif kind == "train":
                    bar.n = state.step
                    extra = {"reward": f"{e['reward']:.3f}"} if isinstance(e.get("reward"), float) else {}  # grpo / ppo
                    bar.set_postfix(loss=f"{state.final_loss:.4f}" if state.final_loss is not None else "-", **extra)
                elif kind == "data":
                    bar.write(data_summary(e))
                elif kind == "warning":
                    bar.write(f"warning: {e.get('message', '')}")
                elif kind == "eval":
                    bar.write(f"step {e.get('step')}: eval_loss {e.get('eval_loss'):.4f}")
            if state.ended or not worker_alive(run_dir):
                state.add(reader.read_new())  # drain what the worker wrote last
                deadline = time.time() + 60  # let it exit, so a script's next `train` (an RLHF chain) may start
                while state.ended and worker_alive(run_dir) and time.time() < deadline:
                    time.sleep(0.2)
                break
            time.sleep(0.5)
        # Return only once the worker has exited (and freed its memory): the next command may start a run.
        if not wait_for_exit(run_dir, launcher.EXIT_WAIT_S):
            bar.write(f"The worker had not exited {launcher.EXIT_WAIT_S:.0f} s after its last event; ending it.")
            launcher.stop(run_dir, grace_s=5, wait=True)
    except KeyboardInterrupt:
        bar.write("Stopping: saving a checkpoint (Ctrl-C again kills it)...")
        try:
            launcher.stop(run_dir, wait=True)
        except KeyboardInterrupt:
            launcher.stop(run_dir, grace_s=0, wait=True)
        return 130
    finally:
        bar.close()
    loss = state.final_loss
    if state.status == "finished":
        print(f"finished: {run_dir}" + (f" (final loss {loss:.4f})" if loss is not None else ""))
        card = report.load(run_dir)
        if card:
            print(report.text(card))
        return 0
    if state.status == "stopped":
        print(f"stopped: {run_dir} — resume with: python app.py train --resume {run_dir}")
        return 0
    print(f"failed: {run_dir}\n{state.error or 'the worker ended without a word; see ' + str(run_dir / 'stdout.log')}",
          file=sys.stderr)
    return 1


def data_summary(e: dict) -> str:
    """The worker's data report in one line: what will be trained on, and everything left out."""
    parts = [f"data: {e.get('rows', 0)} rows -> {e.get('train_rows', 0)} train / {e.get('val_rows', 0)} eval"]
    for key, what in (("truncated", "truncated to cutoff_len"), ("dropped_long", "dropped as too long"),
                      ("dropped_bad", "dropped as unusable"), ("dropped_no_target", "dropped (reply cut off)"),
                      ("ended_on_user", "ended on a user turn")):
        if e.get(key):
            parts.append(f"{e[key]} {what}")
    return ", ".join(parts) + "".join(f"\n  {p}" for p in e.get("problems", [])[:5])


def cmd_train(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python app.py train", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fine-tune with a YAML run config; the run folder is printed at the end.",
        epilog="Config fields (set them in the YAML or with --set key=value):\n" + C.describe_fields())
    ap.add_argument("config", nargs="?", help="run config YAML, e.g. presets/quickstart.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field, e.g. --set train.max_steps=20 (repeatable)")
    ap.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its last checkpoint")
    a = ap.parse_args(argv)
    try:
        if a.resume:
            events = Path(a.resume) / EVENTS_FILE
            offset = events.stat().st_size if events.is_file() else 0
            run_dir = launcher.resume(a.resume)
        else:
            if not a.config:
                ap.error("give a config YAML (e.g. presets/quickstart.yaml) or --resume RUN_DIR")
            cfg = _load_any(a.config, a.overrides)
            if cfg is None:
                return 2
            from engine.config.rl import warnings as rl_warnings
            for w in rl_warnings(cfg):  # a Python reward file runs as code in the worker: say so first
                print("warning:", w, file=sys.stderr)
            run_dir, offset = launcher.start(cfg), 0  # refuses bad settings and bad rows before writing anything
            print(schedule.plan(cfg).describe(), flush=True)
    except (C.ConfigError, launcher.LaunchError) as e:
        print(str(e), file=sys.stderr)
        return 2
    print(f"run folder: {run_dir}", flush=True)
    return _progress(run_dir, offset)


def _load_any(path: str, overrides: list[str]):
    """A Whetstone run config, or a LLaMA-Factory one converted (printed with every key not mapped); None when
    the conversion found keys that change what is trained and have no equivalent (said on stderr)."""
    from engine.config import llamafactory
    conv = llamafactory.read(path)
    if conv is None:
        return C.load(path, overrides)
    print(llamafactory.report(conv), flush=True)
    if conv.errors:
        print(f"\nnot trained: {len(conv.errors)} key(s) above change what is trained and have no Whetstone "
              f"equivalent; fix them, or write the conversion with `python app.py convert {path} -o mine.yaml` and "
              "edit it", file=sys.stderr)
        return None
    return C.from_dict(C.apply_overrides(conv.config, overrides))


def cmd_convert(argv: list[str]) -> int:
    """Convert a LLaMA-Factory training config (llamafactory-cli train X.yaml) into a Whetstone run config."""
    from engine.config import llamafactory
    from engine.runs.atomic import write_text
    ap = argparse.ArgumentParser(prog="python app.py convert", description=cmd_convert.__doc__)
    ap.add_argument("config", help="a LLaMA-Factory YAML, e.g. examples/train_lora/llama3_lora_sft.yaml")
    ap.add_argument("-o", "--out", type=Path, help="write the Whetstone YAML here (default: print it only)")
    a = ap.parse_args(argv)
    conv = llamafactory.read(a.config)
    if conv is None:
        print(f"{a.config}: not a LLaMA-Factory training config (no model_name_or_path / stage / dataset keys, "
              "or not readable YAML); a Whetstone config needs no converting", file=sys.stderr)
        return 2
    print(llamafactory.report(conv))
    try:
        C.from_dict(conv.config)
    except C.ConfigError as e:
        print(f"\n{e}", file=sys.stderr)
    if a.out:
        write_text(a.out, llamafactory.to_yaml(conv))
        print(f"\nwritten: {a.out}" + (" (with the errors above as comments: fix them before training)"
                                       if conv.errors else f"; train it with: python app.py train {a.out}"))
    return 1 if conv.errors else 0


def cmd_ui(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1", help="address to serve on (default 127.0.0.1: this machine only)")
    ap.add_argument("--port", type=int, default=7860)
    ap.add_argument("--auth", metavar="USER:PASSWORD", help="require a login (needed to serve beyond 127.0.0.1)")
    ap.add_argument("--insecure", action="store_true", help="serve beyond 127.0.0.1 without a login (not advised)")
    a = ap.parse_args(argv)
    auth = None
    if a.auth:
        user, _, pw = a.auth.partition(":")
        if not user or not pw:
            ap.error("--auth takes USER:PASSWORD")
        auth = (user, pw)
    if a.host not in LOOPBACK and not auth and not a.insecure:
        ap.error(f"serving on {a.host} would let anyone on the network train and run code on this machine: "
                 "add --auth USER:PASSWORD, or --insecure if you really mean it")
    if a.insecure and not auth:
        print("WARNING: serving without a login on", a.host, file=sys.stderr)
    from webui.app import launch  # after the checks: a refused address costs no Gradio import
    launch(host=a.host, port=a.port, auth=auth, insecure=a.insecure)
    return 0


def cmd_export(argv: list[str]) -> int:
    """Merge a run's adapter into its base (or copy the adapter) and write a standard folder."""
    from engine.config import export as X
    from engine.runs.export_client import start_export
    ap = argparse.ArgumentParser(prog="python app.py export", description=cmd_export.__doc__)
    ap.add_argument("run", nargs="?", help="the run folder, e.g. saves/<run>")
    ap.add_argument("--config", help="an export config YAML instead of the flags below")
    ap.add_argument("--checkpoint", default="", help="e.g. checkpoint-20 (default: the final adapter)")
    ap.add_argument("--kind", choices=["merged", "adapter"], default="merged")
    ap.add_argument("--out", default="", help="output folder (default: <run>/merged or <run>/adapter-export)")
    ap.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    ap.add_argument("--max-shard-size", default="2GB", help="largest safetensors file, e.g. 500MB or 2GB")
    ap.add_argument("--gguf", action="append", default=[], choices=list(typing.get_args(X.GGUFType)),
                    help="also write a GGUF file of this type (repeatable); q4_k_m / q5_k_m / q6_k need "
                         "llama-cpp-python")
    ap.add_argument("--overwrite", action="store_true", help="replace an existing export at the output folder")
    a = ap.parse_args(argv)
    try:
        if a.config:
            cfg = X.load(a.config)
        else:
            if not a.run:
                ap.error("give a run folder (e.g. saves/<run>) or --config export.yaml")
            cfg = X.ExportConfig(run_dir=a.run, checkpoint=a.checkpoint, kind=a.kind, out_dir=a.out,
                                 dtype=a.dtype, max_shard_size=a.max_shard_size, gguf=a.gguf, overwrite=a.overwrite)
        job = start_export(cfg)
    except X.ExportConfigError as e:
        print(str(e), file=sys.stderr)
        return 2
    from tqdm import tqdm
    bar = tqdm(total=100, unit="%", dynamic_ncols=True, desc="export")
    try:
        while True:
            for e in job.poll():
                if e.get("kind") == "check" and e.get("what") == "llama.cpp":
                    bar.write(f"check llama.cpp: {e['file']} ({e['size_bytes'] / 2**20:.0f} MiB) " + (
                        f"answered {e['answer'][:60]!r} ({e['tokens']} tokens, {e['tokens_per_s']} tokens/s, "
                        f"finish {e['finish_reason']})" if e.get("ok") else f"FAILED: {e.get('reason')}"))
                elif e.get("kind") == "check":
                    bar.write(f"check {e.get('what')}: max |diff| {e.get('max_abs_diff'):.3g}"
                              + (f", greedy agreement {100 * e['top1_agreement']:.1f}%" if "top1_agreement" in e else ""))
                elif e.get("kind") == "warning":
                    bar.write(f"warning: {e.get('message')}")
            bar.n = int(100 * job.progress)
            bar.set_postfix_str(job.status)
            if not job.running:
                job.poll()
                break
            time.sleep(0.3)
    except KeyboardInterrupt:
        bar.write("stopping the export; nothing is left behind")
        job.stop()
        return 130
    finally:
        bar.close()
    if job.status == "finished":
        print(f"exported: {job.out}")
        return 0
    print(f"export failed: {job.reason}", file=sys.stderr)
    return 1


def cmd_chat(argv: list[str]) -> int:
    """Chat in the terminal with a run (its adapter or a checkpoint), a base model or a merged folder."""
    from engine.runs.chat_client import ChatClient, ChatError
    from engine.config.chat import ChatSource, GenerationParams
    ap = argparse.ArgumentParser(prog="python app.py chat", description=cmd_chat.__doc__)
    ap.add_argument("target", help="a run folder (saves/<run>), a merged export folder, a .gguf file (llama.cpp), "
                                   "or a base model name")
    ap.add_argument("--checkpoint", default="", help="e.g. checkpoint-20 (default: the final adapter)")
    ap.add_argument("--base", action="store_true", help="answer with the base model beside the tuned one (beside a "
                                                        ".gguf file: the merged folder it was exported into)")
    ap.add_argument("--system", default="", help="system prompt (default: the chat template's own)")
    ap.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    ap.add_argument("--top-p", type=float, default=1.0)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--repetition-penalty", type=float, default=1.0)
    a = ap.parse_args(argv)
    t = Path(a.target)
    if (t / "config.yaml").is_file():
        src = ChatSource("run", run_dir=str(t), checkpoint=a.checkpoint)
    elif (t / "config.json").is_file():
        src = ChatSource("merged", model=str(t))
    elif t.suffix == ".gguf" and t.is_file():  # llama.cpp; --base: the merged folder it was exported into
        src = ChatSource("gguf", model=str(t))
    else:
        src = ChatSource("base", model=a.target)
    params = GenerationParams(system_prompt=a.system, temperature=a.temperature, top_p=a.top_p,
                              max_new_tokens=a.max_new_tokens, repetition_penalty=a.repetition_penalty)
    client = ChatClient(src)
    try:
        print(f"loading {src.label()} ...", flush=True)
        info = client.start()
        if info.get("warning"):
            print("warning:", info["warning"])
        history: list[dict] = []
        while True:
            try:
                q = input("\nyou> ").strip()
            except EOFError:
                break
            if q in ("", "/quit", "/exit"):
                break
            history.append({"role": "user", "content": q})
            variants = ("tuned", "base") if a.base and info.get("can_compare") else ("tuned",)
            asked = list(history)  # both answer the same conversation (not the tuned reply appended below)
            for v in variants:
                print(f"{v}> ", end="", flush=True)
                reply = "".join(print(p, end="", flush=True) or p for p in client.stream(asked, params, v))
                print()
                if v == "tuned":
                    history.append({"role": "assistant", "content": reply.strip()})
    except ChatError as e:
        print(f"chat: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        client.unload()
    return 0



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


def cmd_sweep(argv: list[str]) -> int:
    """Queue one run per combination of the grid, follow them one line each, print the comparison."""
    from engine.runs import compare, sweep
    from engine.runs.paths import saves_dir
    ap = argparse.ArgumentParser(prog="python app.py sweep", description=cmd_sweep.__doc__ + " Every combination "
                                 "is checked first; the runs go through the queue, so they also show in the web UI.")
    ap.add_argument("config", help="the base run config YAML, e.g. presets/quickstart.yaml")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a field and its values (YAML, like --set), e.g. train.learning_rate=1e-4,3e-4 (repeatable)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field for every run (repeatable)")
    ap.add_argument("--name", default="", help="the sweep's name (default sweep-<date>-<time>); its runs are named "
                    "<name>-<n>-<field>_<value>...")
    ap.add_argument("--yes", action="store_true", help=f"queue a grid of more than {sweep.G.MAX_RUNS} runs")
    ap.add_argument("--detach", action="store_true", help="queue the runs and return (compare them later)")
    a = ap.parse_args(argv)
    try:
        base = C.to_dict(C.load(a.config, a.overrides, check_files=False))
        saves = saves_dir(base["output"]["saves_dir"])
        name, runs = sweep.queue_sweep(saves, base, a.grid, a.name, confirmed=a.yes)
    except (C.ConfigError, launcher.LaunchError, ValueError) as e:
        print(f"Nothing was queued.\n{e}", file=sys.stderr)
        return 2
    print(f"sweep {name}: {len(runs)} runs queued in {saves}", flush=True)
    if a.detach:
        print(f"they run one after another; compare them with: python app.py compare {name} --saves {saves}")
        return 0
    rc = sweep.follow(saves, runs)
    found, _ = compare.resolve(saves, [name])
    if found:
        print("\n" + compare.text(compare.table([compare.measure(r) for r in found])))
    return rc


def cmd_compare(argv: list[str]) -> int:
    """Compare runs: losses, tokens/s, peak memory, wall time, held-out scores, the fields that differ."""
    from engine.runs import compare
    from engine.runs.paths import saves_dir
    ap = argparse.ArgumentParser(prog="python app.py compare", description=cmd_compare.__doc__)
    ap.add_argument("runs", nargs="+", help="run folders (saves/<run>), run names, or a sweep's name")
    ap.add_argument("--saves", default="saves", help="where run and sweep names are looked up (default saves/)")
    ap.add_argument("--sort", choices=[c.key for c in compare.COLUMNS],
                    help="sort by this column, best first (default: the one that picks the best run)")
    a = ap.parse_args(argv)
    found, problems = compare.resolve(saves_dir(a.saves), a.runs)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    print(compare.text(compare.table([compare.measure(r) for r in found], a.sort)))
    return 0


def cmd_queue(argv: list[str]) -> int:
    """The run queue: list it, cancel waiting runs, or let queued runs share GPUs."""
    from engine.config import queue as QS
    from engine.runs import queue as Q
    from engine.runs.paths import saves_dir
    from engine.runs.queue_runner import ensure_runner, live_runs
    ap = argparse.ArgumentParser(prog="python app.py queue", description=cmd_queue.__doc__)
    ap.add_argument("action", nargs="?", choices=["list", "cancel", "gpus"], default="list")
    ap.add_argument("args", nargs="*", help="cancel: run names; gpus: GPU indices such as 0,1,2,3 ('' = one "
                    "run at a time)")
    ap.add_argument("--saves", default="saves", help="the saves folder (default saves/)")
    a = ap.parse_args(argv)
    saves = saves_dir(a.saves)
    try:
        if a.action == "cancel":
            for name in a.args:
                print(Q.cancel(saves, name))
        elif a.action == "gpus":
            settings = QS.parse_gpus(",".join(a.args))
            QS.save(Q.folder(saves), settings)
            print(f"queued runs may use GPUs {settings.gpus}" if settings.gpus else "queued runs go one at a time")
            ensure_runner(saves)
        else:
            q = Q.read(saves)
            for name in live_runs(saves):
                print(f"running  {name}")
            for i, e in enumerate(q.entries, 1):
                print(f"{i:>7}  {e.name}" + (f"  (sweep {e.sweep})" if e.sweep else "")
                      + (f"\n         cannot start: {e.error.splitlines()[0]}" if e.error else ""))
            if not q.entries:
                print("the queue is empty")
    except (Q.QueueError, QS.QueueSettingsError) as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0


COMMANDS = {"identity": cmd_identity, "train": cmd_train, "launch-script": cmd_launch_script, "export": cmd_export,
            "chat": cmd_chat,            "sweep": cmd_sweep, "compare": cmd_compare, "queue": cmd_queue,
            "convert": cmd_convert}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return cmd_ui(argv)


if __name__ == "__main__":
    sys.exit(main())
