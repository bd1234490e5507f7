"""The chat worker: `python -m engine.chat`, driven by engine.runs.chat_client.

It speaks JSON lines: commands on stdin, events on stdout (its logs go to stderr).

  -> {"op": "load", "source": {...ChatSource}, "training_run": "<name or empty>"}
  <- {"event": "loading"} ... {"event": "ready", "label", "has_adapter", "device", "rss_gib", "warning"}
  -> {"op": "generate", "id": "r1", "variant": "tuned"|"base", "messages": [...], "params": {...}}
  <- {"event": "token", "id": "r1", "text": "..."} ...
  <- {"event": "done", "id": "r1", "text": "...", "new_tokens", "seconds", "stopped_by"}
  -> {"op": "cancel"}   ends the reply being generated
  -> {"op": "quit"} or end of stdin: the process exits and its memory goes with it
  <- {"event": "error", "id"?, "message"} for anything that failed, in words

Chat while a training run is going: on CPU it is allowed with a warning (both share the cores and
RAM; replies are slower); on a GPU it is refused when the model would not fit in the free memory,
with the numbers and what to do.
"""
from __future__ import annotations

import json
import os
import queue
import sys
import threading
import time
import traceback
from pathlib import Path

from engine.config.chat import params_from_dict, source_from_dict
from engine.modeling.telemetry import rss_gib
from engine.runs.failures import explain as explain_failure
from engine.runs.store import run_config

_out_lock = threading.Lock()
# The worker's own refusals (a source that cannot load, a model that does not fit), said as they are.
REFUSALS = ("RuntimeError", "ValueError", "FileNotFoundError", "ModelLoadError", "ConfigError")
OOM_TIPS = ["unload other models (or stop the training run)", "lower max new tokens", "chat with a smaller model"]


def emit(**event) -> None:
    with _out_lock:
        sys.stdout.write(json.dumps(event, ensure_ascii=False) + "\n")
        sys.stdout.flush()


def weight_bytes(path: str) -> int:
    p = Path(path)
    return sum(f.stat().st_size for f in p.glob("*.safetensors")) if p.is_dir() else 0


def gpu_check(source, training_run: str) -> str:
    """'' when loading is fine; a refusal (raised) when a training run holds a GPU that cannot fit us."""
    import torch
    if not torch.cuda.is_available() or not training_run or source.kind == "gguf":  # llama.cpp runs on the CPU
        return ""
    from engine.modeling import load as models
    if source.kind == "run":
        name = run_config(Path(source.run_dir)).model.name_or_path
    else:
        name = source.model
    need = weight_bytes(models.resolve_path(name)) * 1.2 + 0.5 * 2**30
    free, _total = torch.cuda.mem_get_info()
    if need > free:
        raise RuntimeError(f"Training run {training_run!r} holds the GPU: {free / 2**30:.1f} GiB free, this model "
                           f"needs about {need / 2**30:.1f} GiB. Wait for the run to finish or stop it, then load.")
    return (f"Training run {training_run!r} is using the GPU; chat fits in the {free / 2**30:.1f} GiB left "
            "but slows training a little.")


def explain(e: BaseException) -> str:
    return explain_failure(e, tips=OOM_TIPS, plain=REFUSALS)


class Worker:
    def __init__(self):
        self.loaded = None
        self.cancel = threading.Event()
        self.commands: queue.Queue = queue.Queue()

    def read_stdin(self) -> None:
        for line in sys.stdin:
            line = line.strip()
            if not line:
                continue
            try:
                cmd = json.loads(line)
            except json.JSONDecodeError:
                emit(event="error", message=f"not a JSON command: {line[:200]}")
                continue
            if cmd.get("op") == "cancel":
                self.cancel.set()  # handled at once, while a reply is streaming
                continue
            self.commands.put(cmd)
        self.commands.put({"op": "quit"})

    def load(self, cmd: dict) -> None:
        from engine.chat.generate import load_source
        src = source_from_dict(cmd.get("source") or {})
        problem = src.problem()
        if problem:
            raise RuntimeError(problem)
        emit(event="loading", label=src.label())
        warning = gpu_check(src, cmd.get("training_run", ""))
        if not warning and cmd.get("training_run"):
            warning = (f"Training run {cmd['training_run']!r} is going on this machine: chat shares its CPU "
                       "cores and memory, so replies are slower and both use RAM; unload when done.")
        t0 = time.time()
        if src.kind == "gguf":  # llama.cpp on the CPU; side by side: the merged folder it was exported into
            from engine.chat import gguf
            self.loaded = gguf.load(src)
            merged = self.loaded.merged_dir
            emit(event="ready", label=src.label(), has_adapter=False, can_compare=merged is not None,
                 compare_label=f"Merged folder (transformers): {merged}" if merged else "", device="cpu (llama.cpp)",
                 load_s=round(time.time() - t0, 2), rss_gib=rss_gib(), warning=warning,
                 chat_template_from_file=bool(self.loaded.chat_template))
            return
        self.loaded = load_source(src)
        emit(event="ready", label=src.label(), has_adapter=self.loaded.has_adapter,
             can_compare=src.kind == "run", device=str(self.loaded.model.device),
             load_s=round(time.time() - t0, 2), rss_gib=rss_gib(), warning=warning,
             stop_ids=self.loaded.stop_ids)

    def generate(self, cmd: dict) -> None:
        from engine.chat.generate import model_for, stream
        rid = cmd.get("id", "")
        if self.loaded is None:
            raise RuntimeError("no model loaded")
        params = params_from_dict(cmd.get("params") or {})
        bad = params.problems()
        if bad:
            raise ValueError("; ".join(bad))
        variant = cmd.get("variant", "tuned")
        if self.loaded.source.kind == "gguf":
            return self.generate_gguf(cmd, params, variant)
        if variant == "base" and self.loaded.source.kind != "run":
            raise ValueError("side by side needs a run's adapter or model loaded (the base is already what answers)")
        self.cancel.clear()
        text, result, t0 = "", {}, time.time()
        with model_for(self.loaded, variant) as model:
            for piece in stream(model, self.loaded.tok, cmd.get("messages") or [], params, self.loaded.stop_ids,
                                cancel=self.cancel, result=result):
                text += piece
                emit(event="token", id=rid, text=piece)
        secs = time.time() - t0
        emit(event="done", id=rid, variant=variant, text=text.strip(), seconds=round(secs, 3),
             new_tokens=result.get("new_tokens", 0), token_ids=result.get("token_ids", []), stopped_by=result.get("stopped_by", ""),
             tokens_per_s=round(result.get("new_tokens", 0) / max(secs, 1e-6), 2), rss_gib=rss_gib())

    def generate_gguf(self, cmd: dict, params, variant: str) -> None:
        """The GGUF file answers in llama.cpp; variant 'base' is the merged folder beside it, in transformers."""
        from engine.chat import gguf
        from engine.chat.generate import load_source, stream as hf_stream
        from engine.config.chat import ChatSource
        rid, loaded = cmd.get("id", ""), self.loaded
        if variant == "base" and loaded.merged_dir is None:
            raise ValueError("side by side needs the merged folder this GGUF file was exported into (<export>/gguf/)")
        if variant == "base" and loaded.merged is None:
            loaded.merged = load_source(ChatSource("merged", model=str(loaded.merged_dir)))
        self.cancel.clear()
        text, result, t0 = "", {}, time.time()
        pieces = (gguf.stream(loaded.llm, cmd.get("messages") or [], params, cancel=self.cancel, result=result)
                  if variant == "tuned" else
                  hf_stream(loaded.merged.model, loaded.merged.tok, cmd.get("messages") or [], params,
                            loaded.merged.stop_ids, cancel=self.cancel, result=result))
        for piece in pieces:
            text += piece
            emit(event="token", id=rid, text=piece)
        secs = time.time() - t0
        emit(event="done", id=rid, variant=variant, text=text.strip(), seconds=round(secs, 3),
             new_tokens=result.get("new_tokens", 0), stopped_by=result.get("stopped_by", ""),
             finish_reason=result.get("finish_reason", ""),
             tokens_per_s=round(result.get("new_tokens", 0) / max(secs, 1e-6), 2), rss_gib=rss_gib())

    def serve(self) -> int:
        threading.Thread(target=self.read_stdin, daemon=True).start()
        while True:
            cmd = self.commands.get()
            op = cmd.get("op")
            if op == "quit":
                return 0
            try:
                if op == "load":
                    self.load(cmd)
                elif op == "generate":
                    self.generate(cmd)
                else:
                    emit(event="error", id=cmd.get("id"), message=f"unknown op {op!r}")
            except Exception as e:  # every failure is reported; the worker stays up for the next command
                traceback.print_exc(file=sys.stderr)
                emit(event="error", id=cmd.get("id"), op=op, message=explain(e))


def main() -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return Worker().serve()

