"""Methods side by side on one model: the same data, seed, batch and number of steps for every
fine-tuning method; prints a markdown table per task of trainable parameters, the loss after N steps
(mean of the last 3 logged steps, so one lucky batch does not decide), held-out accuracy (greedy
replies to items no training row has, scored by bench/tasks.py), seconds per step and peak memory.

    python bench/methods.py                       # the default model on CPU, 30 steps each, identity task
    python bench/methods.py --model PATH --steps 50 --methods lora full
    python bench/methods.py --tasks identity records --steps 60 --methods lora "prefix (text)" ptuning_v2

Each method runs the real worker (python -m engine.train) in its own process, with the learning rate
that method is usually run with (listed in the table); the held-out replies come from the run loaded
the way Chat loads it. A script, not a test: figures drift on a shared machine, so compare rows of one run.
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
sys.path.insert(0, str(REPO))
INIT_TEXT = "You are a helpful assistant. Read the request carefully and answer it in the expected form."
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
    # the prompt-learning family as the method notes describe it (issue 19)
    "prefix (text)": ({"finetuning": "prefix", "prompt": {"init_text": INIT_TEXT}}, 1e-2),
    "prefix+mlp": ({"finetuning": "prefix", "prompt": {"prefix_projection": True}}, 1e-3),
    "prefix+mlp (text)": ({"finetuning": "prefix", "prompt": {"prefix_projection": True, "init_text": INIT_TEXT}},
                          1e-3),
    "ptuning (mlp)": ({"finetuning": "ptuning", "prompt": {"encoder": "mlp"}}, 1e-2),
    "ptuning (lstm)": ({"finetuning": "ptuning", "prompt": {"encoder": "lstm"}}, 1e-2),
    "ptuning_v2": ({"finetuning": "ptuning_v2"}, 1e-2),
    "ptuning_v2 (top half)": ({"finetuning": "ptuning_v2", "prompt": {"layers": "top HALF"}}, 1e-2),
    "ptuning_v2 (bottom half)": ({"finetuning": "ptuning_v2", "prompt": {"layers": "bottom HALF"}}, 1e-2),
}
PROMPT_FAMILY = ["lora", "prefix", "prefix (text)", "prefix+mlp", "prefix+mlp (text)", "prompt", "ptuning (mlp)",
                 "ptuning (lstm)", "ptuning_v2", "ptuning_v2 (top half)", "ptuning_v2 (bottom half)"]


def _method(name: str, model: str) -> dict:
    method = json.loads(json.dumps(METHODS[name][0]))
    layers = method.get("prompt", {}).get("layers", "")
    if "HALF" in layers:  # half of this model's layers
        from engine.preflight import shape as model_shape
        half = model_shape.of(model).layers // 2
        method["prompt"]["layers"] = layers.replace("HALF", str(half))
    return method


def run(name: str, model: str, steps: int, out: Path, dataset: str) -> dict:
    lr = METHODS[name][1]
    run_name = "bench-" + "".join(c if c.isalnum() else "-" for c in name)
    cfg = {"model": {"name_or_path": model},
           "data": {"datasets": [dataset], "cutoff_len": 256},
           "method": _method(name, model),
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
            "first_loss": train[0]["loss"], "final_loss": sum(e["loss"] for e in train[-3:]) / len(train[-3:]),
            "s_per_step": (times[-1] - times[0]) / max(len(times) - 1, 1), "wall_s": wall,
            "peak_rss_gib": max(e.get("rss_gib", 0) for e in train), "run_dir": str(run_dir)}


def held_out_accuracy(run_dir: str | None, model: str, task: dict, batch: int = 10) -> tuple[float, list[str]]:
    """Share of held-out items answered correctly (greedy, in left-padded batches), the run loaded the
    way Chat loads it; with run_dir None, the base model."""
    import torch

    from engine.chat.generate import load_run
    from engine.modeling.stop_tokens import stop_token_ids
    m, tok = load_run(run_dir, base=model)
    tok.padding_side = "left"
    rows, replies = task["held_out"], []
    for i in range(0, len(rows), batch):
        texts = [tok.apply_chat_template([{"role": "user", "content": r["instruction"]}], add_generation_prompt=True,
                                         tokenize=False) for r in rows[i:i + batch]]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.no_grad():
            out = m.generate(**enc, max_new_tokens=task["max_new_tokens"], do_sample=False,
                             eos_token_id=stop_token_ids(tok), pad_token_id=tok.pad_token_id)
        replies += tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    hits = [task["correct"](r, row["output"]) for r, row in zip(replies, rows)]
    return sum(hits) / len(hits), replies


def table(rows: list[dict], steps: int, task_name: str = "") -> str:
    lines = [f"| method | lr | trainable params | % | loss step 1 | loss after {steps} (mean last 3) | held-out "
             "accuracy | s/step | peak RSS GiB |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['method']} | failed: {r['error'][:80]} ||||||||")
            continue
        if r.get("base"):
            lines.append(f"| base model (untrained) | | 0 | 0 | | | {100 * r['accuracy']:.0f}% | | |")
            continue
        acc = f"{100 * r['accuracy']:.0f}%" if "accuracy" in r else ""
        lines.append(f"| {r['method']} | {r['lr']:g} | {r['trainable']:,} | {r['pct']:.3f} | {r['first_loss']:.3f} | "
                     f"{r['final_loss']:.3f} | {acc} | {r['s_per_step']:.2f} | {r['peak_rss_gib']:.2f} |")
    return (f"**{task_name}**\n\n" if task_name else "") + "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--dataset", default=None, help="train on this dataset instead of a task's (no accuracy column)")
    ap.add_argument("--tasks", nargs="*", default=["identity"], choices=["identity", "records"])
    ap.add_argument("--methods", nargs="*", default=list(METHODS), choices=list(METHODS))
    ap.add_argument("--prompt-family", action="store_true", help="the methods of issue 19's table: " +
                    ", ".join(PROMPT_FAMILY))
    ap.add_argument("--out", type=Path, default=REPO / "saves" / "bench-methods")
    a = ap.parse_args()
    methods = PROMPT_FAMILY if a.prompt_family else a.methods
    from bench.tasks import task as make_task
    tables = []
    for task_name in ([None] if a.dataset else a.tasks):
        task = None if task_name is None else make_task(task_name, a.out)
        out = a.out / (task_name or "dataset")
        rows = []
        if task is not None:
            acc, replies = held_out_accuracy(None, a.model, task)
            rows.append({"method": "base", "base": True, "accuracy": acc, "replies": replies[:3]})
            print(json.dumps(rows[-1]), flush=True)
        for name in methods:
            r = run(name, a.model, a.steps, out, a.dataset or task["dataset"])
            if task is not None and "error" not in r:
                r["accuracy"], replies = held_out_accuracy(r["run_dir"], a.model, task)
                r["replies"] = replies[:3]
            rows.append(r)
            print(json.dumps(rows[-1]), flush=True)
        tables.append(table(rows, a.steps, task_name or a.dataset))
        print(tables[-1], flush=True)
    print("\n\n".join(tables))
    return 0


if __name__ == "__main__":
    sys.exit(main())
