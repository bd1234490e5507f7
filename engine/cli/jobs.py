"""`python app.py chat` and `export`: the chat and export workers driven from the terminal."""
from __future__ import annotations

import argparse
import sys
import time
import typing
from pathlib import Path


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
