"""The workers part of bench/gpu_acceptance.py: LoRA and QLoRA SFT through the real worker
(`python -m engine.train --config saves/<run>/config.yaml`), the run folders and events as a user gets
them. Every run trains on one repeated batch of rows that fill data.cutoff_len, so the loss must fall;
its peak memory (the train events' vram_peak_gib) is set beside engine.preflight.memory's estimate for
the same config. The runs start together: each one's peak is its own process's, and the GPU has room.
"""
from __future__ import annotations

import json
import math
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
WORDS = ("river stone lamp garden market winter copper signal orchard harbour ladder velvet meadow thunder "
         "pencil island canvas lantern falcon ember quarry saddle violin marble cobalt prairie tunnel").split()


def dataset(path: Path, rows: int, words: int, seed: int) -> Path:
    """Alpaca rows long enough to fill the cutoff (a third prompt, the rest reply), random words."""
    rnd = random.Random(seed)
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(rows):
            say = lambda n: " ".join(rnd.choice(WORDS) for _ in range(n))  # noqa: E731
            f.write(json.dumps({"instruction": say(words // 3), "input": "", "output": say(words)}) + "\n")
    return path


def write_run(saves: Path, name: str, model_dir: str, data: Path, case: dict) -> Path:
    cfg = {"model": {"name_or_path": model_dir},
           "data": {"datasets": [str(data)], "cutoff_len": case["cutoff"]},
           "method": {"finetuning": case["method"], "lora": {"rank": 16, "alpha": 32}},
           "train": {"max_steps": case["steps"], "batch_size": case["bs"], "learning_rate": case.get("lr", 5e-3),
                     "scheduler": "constant", "warmup_ratio": 0.0, "logging_steps": 1, "save_steps": 10**6,
                     "gradient_checkpointing": case.get("gc", False)},
           "output": {"run_name": name, "saves_dir": str(saves)}}
    run_dir = saves / name
    shutil.rmtree(run_dir, ignore_errors=True)  # a re-run (--only workers) starts each run afresh
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run_dir / "config.yaml"


def estimate(config_path: Path) -> dict:
    from engine import config as C
    from engine.preflight import memory, shape
    cfg = C.load(config_path)
    est = memory.estimate(shape.of(cfg.model.name_or_path), cfg, memory.gpu_total_gib())
    return {"estimate_gib": est.peak_gib, "estimate_parts_gib": est.parts_gib}


def examine(run_dir: Path, out, wall: float, cuda: bool) -> dict:
    from engine.runs.events import read_all
    from engine.runs.store import summarize
    evts = read_all(run_dir / "events.jsonl")
    train = [e for e in evts if e["kind"] == "train"]
    losses = [e["loss"] for e in train]
    resolved = next((e for e in evts if e["kind"] == "resolved"), {})
    s = summarize(run_dir)
    r = {"returncode": out.returncode, "status": s.status if s else None, "wall_s": round(wall, 1),
         "steps": len(train), "loss_first": losses[0] if losses else None, "loss_last": losses[-1] if losses else None,
         "attention": resolved.get("attention"), "packing": resolved.get("packing"), "liger": resolved.get("liger"),
         "adapter_saved": (run_dir / "adapter" / "adapter_model.safetensors").is_file()}
    r["loss_finite_and_falling"] = bool(losses) and all(map(math.isfinite, losses)) and losses[-1] < losses[0]
    need = ("vram_alloc_gib", "vram_reserved_gib") if cuda else ("rss_gib",)
    r["memory_in_every_train_event"] = bool(train) and all(all(k in e for k in need) for e in train)
    if cuda and train:
        r["peak_alloc_gib"] = max(e.get("vram_peak_gib", 0) for e in train)
        r["peak_reserved_gib"] = max(e.get("vram_reserved_gib", 0) for e in train)
    if out.returncode:
        r["stderr_tail"] = out.stderr[-2500:]
    return r


def load_back(run_dir: Path) -> bool:
    """The saved adapter loads with peft onto its base, as Chat loads it, and generates."""
    import torch
    from peft import PeftModel

    from engine.chat.generate import load_run
    model, tok = load_run(run_dir)
    ids = tok("river stone lamp", return_tensors="pt").input_ids.to(model.device)
    with torch.no_grad():
        new = model.generate(input_ids=ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    ok = isinstance(model, PeftModel) and new.shape[1] == ids.shape[1] + 4
    del model
    return ok


def workers(plan: dict) -> dict:
    import torch
    cuda = torch.cuda.is_available()
    work = Path(plan["work"])
    saves = work / "saves"
    runs, procs, out = {}, {}, {"runs": {}}
    for name, case in plan["cases"].items():
        data = dataset(work / f"rows-{name}.jsonl", case["bs"], case["words"], seed=len(name))
        cfg = write_run(saves, name, str(work / "models" / case["size"]), data, case)
        runs[name] = cfg
        out["runs"][name] = {**{k: case[k] for k in ("size", "method", "bs", "cutoff", "steps")},
                             "gc": case.get("gc", False), **estimate(cfg)}
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=f"{REPO}:{os.environ.get('PYTHONPATH', '')}")
    t0 = time.time()
    for name, cfg in runs.items():
        procs[name] = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                                       env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for name, p in procs.items():
        try:
            so, se = p.communicate(timeout=max(30, plan["deadline"] - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            so, se = p.communicate()
        done = subprocess.CompletedProcess(p.args, p.returncode, so, se)
        r = out["runs"][name]
        r.update(examine(runs[name].parent, done, time.time() - t0, cuda))
        if r.get("peak_alloc_gib"):  # the goal is read against the allocated peak (torch's own count); the
            # estimate also holds a fixed 0.5 GiB for the CUDA context, which only the reserved figure nears
            r["estimate_over_measured"] = round(r["estimate_gib"] / r["peak_alloc_gib"], 3)
            r["estimate_over_reserved"] = round(r["estimate_gib"] / max(r["peak_reserved_gib"], 1e-9), 3)
            r["estimate_within_25pct"] = abs(r["estimate_over_measured"] - 1) <= 0.25
    for name in plan.get("load_back", []):
        if out["runs"][name].get("adapter_saved"):
            out["runs"][name]["adapter_loads_back"] = load_back(runs[name].parent)
    out["ok"] = all(r["returncode"] == 0 and r["loss_finite_and_falling"] and r["memory_in_every_train_event"]
                    and r["adapter_saved"] and r.get("adapter_loads_back", True) for r in out["runs"].values())
    return out
