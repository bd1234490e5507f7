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

from engine.cli import jobs, many, tools, train
from engine.runs.paths import LOOPBACK


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
    from webui.allocator import arrow_on_the_system_allocator
    arrow_on_the_system_allocator()  # before gradio loads pyarrow (webui/allocator.py says why)
    from webui.app import launch  # after the checks: a refused address costs no Gradio import
    launch(host=a.host, port=a.port, auth=auth, insecure=a.insecure)
    return 0


COMMANDS = {"train": train.cmd_train, "convert": train.cmd_convert, "chat": jobs.cmd_chat, "export": jobs.cmd_export,
            "sweep": many.cmd_sweep, "compare": many.cmd_compare, "queue": many.cmd_queue,
            "launch-script": tools.cmd_launch_script, "identity": tools.cmd_identity}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        return COMMANDS[argv[0]](argv[1:])
    return cmd_ui(argv)


if __name__ == "__main__":
    sys.exit(main())
