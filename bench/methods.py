"""Methods side by side on one model: the same data, seed, batch and number of steps for every
fine-tuning method; prints a markdown table of trainable parameters, the loss after N steps (mean of
the last 3 logged steps, so one lucky batch does not decide), seconds per step and peak memory.

    python bench/methods.py                       # the default model on CPU, 30 steps each
    python bench/methods.py --model PATH --steps 50 --methods lora full

Each method runs the real worker (python -m engine.train) in its own process, with the learning rate
that method is usually run with (listed in the table). A script, not a test: figures drift on a
shared machine, so compare rows of one run.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# method -> (method section, learning rate)
METHODS = {
    "full": ({"finetuning": "full"}, 5e-5),
    "freeze": ({"finetuning": "freeze", "freeze": {"trainable_layers": 2}}, 1e-4),
    "lora": ({"finetuning": "lora"}, 1e-3),
    "lora+rslora": ({"finetuning": "lora", "lora": {"use_rslora": True}}, 1e-3),
    "dora": ({"finetuning": "lora", "lora": {"use_dora": True}}, 1e-3),
    "pissa": ({"finetuning": "lora", "lora": {"init": "pissa"}}, 1e-3),
    "lora+ (ratio 16)": ({"finetuning": "lora", "lora": {"loraplus_lr_ratio": 16.0}}, 1e-3),
    "qlora (nf4)": ({"finetuning": "qlora"}, 1e-3),
    "adalora": ({"finetuning": "adalora"}, 1e-3),
    "ia3": ({"finetuning": "ia3"}, 1e-2),
    "prefix": ({"finetuning": "prefix"}, 1e-2),
    "prompt": ({"finetuning": "prompt"}, 3e-2),
    "ptuning": ({"finetuning": "ptuning"}, 1e-2),
    "bottleneck": ({"finetuning": "bottleneck"}, 1e-3),
}


def run(name: str, model: str, steps: int, out: Path, dataset: str) -> dict:
    method, lr = METHODS[name]
    run_name = "bench-" + "".join(c if c.isalnum() else "-" for c in name)
    cfg = {"model": {"name_or_path": model},
           "data": {"datasets": [dataset], "cutoff_len": 256},
           "method": method,
           "train": {"max_steps": steps, "batch_size": 4, "learning_rate": lr, "save_steps": 10_000,
                     "logging_steps": 1, "seed": 0, "scheduler": "constant"},
           "output": {"run_name": run_name, "saves_dir": str(out)}}
    run_dir = out / run_name
    if run_dir.exists():
        import shutil
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg))
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "engine.train", "--config", str(run_dir / "config.yaml")], cwd=REPO,
                       capture_output=True, text=True)
    wall = time.time() - t0
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    if r.returncode != 0:
        err = next((e["message"] for e in events if e["kind"] == "error"), r.stderr[-300:])
        return {"method": name, "error": err}
    train = [e for e in events if e["kind"] == "train"]
    resolved = next(e for e in events if e["kind"] == "resolved")
    times = [e["t"] for e in train]
    return {"method": name, "lr": lr, "trainable": resolved["trainable_params"], "pct": resolved["trainable_pct"],
            "first_loss": train[0]["loss"], "final_loss": sum(e["loss"] for e in train[-3:]) / 3,
            "s_per_step": (times[-1] - times[0]) / max(len(times) - 1, 1), "wall_s": wall,
            "peak_rss_gib": max(e.get("rss_gib", 0) for e in train)}


def table(rows: list[dict], steps: int) -> str:
    lines = [f"| method | lr | trainable params | % | loss step 1 | loss after {steps} (mean last 3) | s/step | "
             "peak RSS GiB |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error'][:80]} |||||||")
            continue
        lines.append(f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} | {r['pct']:.3f} | {r['first_loss']:.3f} | "
                     f"{r['final_loss']:.3f} | {r['s_per_step']:.2f} | {r['peak_rss_gib']:.2f} |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--dataset", default="identity")
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--out", type=Path, default=REPO / "saves" / "bench-methods")
    a = ap.parse_args()
    rows = []
    for name in a.methods:
        rows.append(run(name, a.model, a.steps, a.out, a.dataset))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows, a.steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
