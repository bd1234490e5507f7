"""The export worker: `python -m engine.export --config export.yaml` (settings: engine.config.export).

Top to bottom, for a merged export:
  load the base at full precision (fp32; a QLoRA run merges into unquantised weights, never into
  4-bit ones) + the adapter -> logits of base + adapter on a few chat prompts -> merge_and_unload ->
  the merged logits must match (max |diff| <= MERGE_TOL, fp32) and no weight may be NaN/inf ->
  cast to the chosen dtype and save sharded safetensors, tokenizer + chat template, a
  generation_config whose eos is the template's end-of-turn tokens -> load that folder back with
  plain transformers and compare again (WRITTEN_TOP1 of greedy next tokens agree, |diff| bounded)
  -> GGUF files if asked -> README.md model card and Ollama Modelfile -> rename into place.

Everything is built in a hidden temp folder beside the target (`.<name>.partial-<pid>`) and renamed
at the end, so a failed or killed export never leaves a folder that looks complete. Progress goes
to `.<name>.events.jsonl` beside the target.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from engine import config as C
from engine.config.chat import ChatSource
from engine.config.export import ExportConfig, load
from engine.export import card as model_card
from engine.export import modelfile as ollama_modelfile
from engine.runs.atomic import publish
from engine.runs.events import EventWriter
from engine.runs.processes import pid_alive
from engine.runs.store import run_config, weights_dir

MERGE_TOL = 1e-3          # fp32 merged vs base + adapter: max |logit difference|
WRITTEN_TOL = {"fp32": 1e-4, "bf16": 1.0, "fp16": 0.25}   # written folder vs fp32 merged, max |diff|
WRITTEN_TOP1 = {"fp32": 1.0, "bf16": 0.9, "fp16": 0.95}   # share of positions whose argmax agrees
VERIFY_PROMPTS = ["Who are you?", "What can you help me with today?", "Write one sentence about rivers.",
                  "Explain what a compiler does.", "Give me three tips for sleeping well."]


class ExportCheckFailed(RuntimeError):
    pass


def partial_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.partial-{os.getpid()}"


def clean_stale_partials(out: Path) -> None:
    """Remove temp folders left by killed exports of this target (their pid is gone)."""
    for p in out.parent.glob(f".{out.name}.partial-*"):
        pid = p.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(p, ignore_errors=True)


def prompts(tok, n: int):
    import torch
    out = []
    for q in VERIFY_PROMPTS[:n]:
        enc = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                      return_tensors="pt", return_dict=True)
        out.append(enc["input_ids"])
    return out, torch


def logits_of(model, batches) -> list:
    import torch
    with torch.no_grad():
        return [model(input_ids=ids.to(model.device)).logits.float().cpu() for ids in batches]


def compare(a: list, b: list) -> tuple[float, float]:
    """(max |diff|, share of positions with the same argmax)."""
    diff = max(float((x - y).abs().max()) for x, y in zip(a, b))
    agree = sum(int((x.argmax(-1) == y.argmax(-1)).sum()) for x, y in zip(a, b))
    total = sum(x.shape[0] * x.shape[1] for x in a)
    return diff, agree / total


def nan_weights(model) -> list[str]:
    import torch
    return [n for n, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]


def export_merged(cfg: ExportConfig, tmp: Path, ev: EventWriter) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    from engine.chat.generate import load_source
    from engine.modeling.stop_tokens import stop_strings, stop_token_ids

    ev.status("loading", progress=0.05, what="base model at full precision + adapter")
    loaded = load_source(ChatSource("run", run_dir=cfg.run_dir, checkpoint=cfg.checkpoint), full_precision=True)
    model, tok = loaded.model.float(), loaded.tok
    batches, _ = prompts(tok, cfg.verify_prompts)
    check: dict = {"prompts": len(batches), "merge_tolerance": MERGE_TOL}
    ref = logits_of(model, batches)
    if loaded.has_adapter:
        ev.status("merging", progress=0.25)
        model = model.merge_and_unload()
        merged = logits_of(model, batches)
        diff, _ = compare(ref, merged)
        check["merge_max_abs_diff"] = diff
        ev.write("check", 0, what="merge", max_abs_diff=diff, tolerance=MERGE_TOL)
        if not diff <= MERGE_TOL:
            raise ExportCheckFailed(f"merged logits differ from base + adapter by {diff:.3g} (> {MERGE_TOL}); "
                                    "the merge is wrong, nothing was written")
        ref = merged
    else:
        check["merge_max_abs_diff"] = 0.0
    bad = nan_weights(model)
    if bad:
        raise ExportCheckFailed(f"{len(bad)} weights hold NaN or inf (first: {bad[0]}); the run diverged - "
                                "export an earlier checkpoint or retrain with a lower learning rate")

    ev.status("writing", progress=0.4, dtype=cfg.dtype, max_shard_size=cfg.max_shard_size)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[cfg.dtype]
    model = model.to(dtype)
    stops = stop_token_ids(tok)
    model.config.eos_token_id = stops[0] if len(stops) == 1 else stops
    gc = GenerationConfig.from_model_config(model.config)
    gc.eos_token_id = stops
    gc.bos_token_id = tok.bos_token_id
    gc.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    gc.do_sample = False
    model.generation_config = gc
    model.save_pretrained(tmp, safe_serialization=True, max_shard_size=cfg.max_shard_size)
    tok.save_pretrained(tmp)
    del model

    ev.status("verifying", progress=0.6, what="loading the written folder back")
    back = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.float32, use_safetensors=True).eval()
    if nan_weights(back):
        raise ExportCheckFailed("the written weights hold NaN or inf (the chosen dtype overflows?); try bf16 or fp32")
    diff, agree = compare(ref, logits_of(back, batches))
    check.update(written_max_abs_diff=diff, written_top1_agreement=agree,
                 written_tolerance=WRITTEN_TOL[cfg.dtype], written_top1_required=WRITTEN_TOP1[cfg.dtype])
    ev.write("check", 0, what="written", dtype=cfg.dtype, max_abs_diff=diff, top1_agreement=agree,
             tolerance=WRITTEN_TOL[cfg.dtype], top1_required=WRITTEN_TOP1[cfg.dtype])
    if diff > WRITTEN_TOL[cfg.dtype] or agree < WRITTEN_TOP1[cfg.dtype]:
        raise ExportCheckFailed(f"the {cfg.dtype} folder answers differently from the merged model (max |diff| "
                                f"{diff:.3g}, greedy agreement {100 * agree:.1f}%); export as fp32 or bf16")
    del back

    check["gguf"], check["llama_cpp"] = write_ggufs(cfg, tmp, stops, ev) if cfg.gguf else ([], {})
    check["stop_strings"] = stop_strings(tok)
    return {"check": check, "tok": tok, "cfg": loaded.cfg}


def write_ggufs(cfg: ExportConfig, tmp: Path, stops: list[int], ev: EventWriter) -> tuple[list[str], dict]:
    """The GGUF files asked for, in gguf/ (a GGUF file is self-contained, and a reader given (folder,
    gguf_file=...) must not mix in the HF tokenizer files beside it): f16 / q8_0 written here, the K-quants made
    by llama.cpp's quantizer from the f16 file; then each is loaded in llama.cpp and asked a question.
    Returns (the files, each one's llama.cpp check)."""
    from engine.config.export import LLAMA_CPP_TYPES, llama_cpp_installed
    from engine.export.gguf import check_in_llama_cpp, quantize, write_gguf
    run = Path(cfg.run_dir).name
    (tmp / "gguf").mkdir(exist_ok=True)
    path = lambda q: tmp / "gguf" / f"{run}-{q}.gguf"  # noqa: E731
    f16 = path("f16") if "f16" in cfg.gguf else tmp / "gguf" / f".{run}-f16.tmp"
    todo = sorted(set(cfg.gguf), key=["f16", "q8_0", *LLAMA_CPP_TYPES].index)
    if any(q in LLAMA_CPP_TYPES for q in todo) and "f16" not in todo:
        todo.insert(0, "f16-source")
    for i, q in enumerate(todo):
        ev.status("gguf", progress=0.66 + 0.16 * i / len(todo), qtype=q.removesuffix("-source"))
        if q in LLAMA_CPP_TYPES:
            quantize(f16, path(q), q)
        else:
            write_gguf(tmp, f16 if q.startswith("f16") else path(q), q.removesuffix("-source"), stops, name=run)
    if "f16" not in cfg.gguf:
        f16.unlink(missing_ok=True)  # only the source of the K-quants
    files, checks = [f"gguf/{path(q).name}" for q in dict.fromkeys(cfg.gguf)], {}
    if not llama_cpp_installed():
        ev.write("warning", 0, message="the GGUF files were not run in llama.cpp: llama-cpp-python is not installed")
        return files, checks
    for i, name in enumerate(files):
        ev.status("gguf", progress=0.82 + 0.1 * i / len(files), what=f"running {name} in llama.cpp")
        res = checks[name] = check_in_llama_cpp(tmp / name)
        ev.write("check", 0, what="llama.cpp", file=name, size_bytes=(tmp / name).stat().st_size, **res)
        if not res["ok"]:
            ev.write("warning", 0, message=f"{name}: {res.get('reason') or 'llama.cpp answered nothing'}")
    return files, checks


def export_adapter(cfg: ExportConfig, tmp: Path, ev: EventWriter) -> dict:
    from engine.chat.generate import run_tokenizer
    from engine.modeling.stop_tokens import stop_strings
    from engine.runs.store import ADAPTER_CONFIG_FILES
    wdir = weights_dir(cfg.run_dir, cfg.checkpoint)
    conf = next((f for f in ADAPTER_CONFIG_FILES if wdir is not None and (wdir / f).is_file()), None)
    if conf is None:
        raise ExportCheckFailed("this run has no adapter (a full or freeze run); choose a merged export")
    ev.status("writing", progress=0.3)
    tmp.mkdir(parents=True)
    for name in (conf, "adapter_model.safetensors"):
        shutil.copy2(wdir / name, tmp / name)
    rcfg = run_config(Path(cfg.run_dir))
    tok = run_tokenizer(rcfg, wdir, Path(cfg.run_dir))
    tok.save_pretrained(tmp)
    from safetensors.torch import load_file
    import torch
    bad = [k for k, v in load_file(str(tmp / "adapter_model.safetensors")).items() if not torch.isfinite(v).all()]
    if bad:
        raise ExportCheckFailed(f"adapter weights hold NaN or inf ({bad[0]}); export an earlier checkpoint")
    return {"check": {"stop_strings": stop_strings(tok)}, "tok": tok, "cfg": rcfg}


def run(cfg: ExportConfig, ev: EventWriter) -> Path:
    import dataclasses

    out = cfg.output_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_partials(out)
    tmp = partial_dir(out)
    shutil.rmtree(tmp, ignore_errors=True)
    ev.status("starting", progress=0.0, pid=os.getpid(), out=str(out), config=dataclasses.asdict(cfg))
    try:
        res = export_merged(cfg, tmp, ev) if cfg.kind == "merged" else export_adapter(cfg, tmp, ev)
        ev.status("documenting", progress=0.92)
        check, tok = res["check"], res["tok"]
        run_cfg = C.to_dict(res["cfg"])
        if cfg.kind == "merged":
            gg = check.get("gguf") or []
            try:
                (tmp / "Modelfile").write_text(ollama_modelfile.modelfile(
                    tok, f"./{gg[0]}" if gg else ".", check["stop_strings"]))
            except ollama_modelfile.ModelfileError as e:
                ev.write("warning", 0, message=f"no Modelfile: {e}")
        (tmp / "whetstone_export.json").write_text(json.dumps(
            {"export": dataclasses.asdict(cfg), "check": check, "t": time.time()}, indent=1, default=str))
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + ["README.md"]
        (tmp / "README.md").write_text(model_card.render(
            Path(cfg.run_dir), run_cfg, cfg.kind, cfg.dtype, cfg.checkpoint,
            check if cfg.kind == "merged" else {}, files))
        publish(tmp, out, durable=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    ev.status("finished", progress=1.0, out=str(out), check={k: v for k, v in check.items()})
    return out


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.export", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path, help="an export config YAML (engine.config.export)")
    a = ap.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # Stop: clean up the temp folder, then exit
    cfg = load(a.config, check=False)
    ev = EventWriter(cfg.events_path())
    try:
        problems = cfg.problems()
        if problems:
            raise ValueError("; ".join(problems))
        out = run(cfg, ev)
        print(f"exported: {out}", flush=True)
        return 0
    except BaseException as e:
        traceback.print_exc(file=sys.stderr)
        msg = str(e) if isinstance(e, (ExportCheckFailed, ValueError, FileNotFoundError)) else f"{type(e).__name__}: {e}"
        if isinstance(e, KeyboardInterrupt):
            msg = "interrupted; nothing was written"
        ev.error(msg)
        ev.status("failed", reason=msg)
        return 1
    finally:
        ev.close()

