"""`python app.py train` and `convert`: start a run (a Whetstone config, or a LLaMA-Factory one converted),
follow it with one progress bar until its worker has exited; `--resume` continues one."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from engine import config as C
from engine.preflight import schedule
from engine.runs import launcher, report
from engine.runs.events import EVENTS_FILE, EventReader
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
