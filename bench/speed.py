"""Whetstone's training step against the hand-written Hugging Face Trainer + PEFT loop, side by side.

Runs ../shared/bench/hf_baseline.py (the peer: batches padded to their longest row, full logits)
and Whetstone's own step (engine.train.collate packing + engine.train.loss trained-positions-only
logits, through the same Trainer) on the same model shape, the same rows (same seed and length
mix), the same LoRA settings and the same number of steps, each in its own process, then prints
one table: real (non-padding) tokens/s, peak memory, MFU and the ratios.

  python bench/speed.py --size 135m --steps 8 --bs 4 --maxlen 256        # CPU (2 cores)
  python bench/speed.py --size 1b --steps 30 --bs 8                      # H100
  python bench/speed.py --size 8b --steps 20 --bs 4 --gc                 # H100

MFU counts 4 FLOPs per parameter per real token (forward plus the backward through frozen
weights; nothing for recomputation or padding) against the device's dense bf16 peak (989 TFLOP/s
on an H100); on CPU it is left out.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# The peer: ../shared/bench/hf_baseline.py, or the copy bench/gpu_wheels.py puts in .gpu/ (../shared does not
# travel to the GPU machine).
BASELINE = next((p for p in (REPO.parent / "shared" / "bench" / "hf_baseline.py", REPO / ".gpu" / "hf_baseline.py")
                 if p.is_file()), REPO.parent / "shared" / "bench" / "hf_baseline.py")
# Dense bf16 matmul peaks: the H200's as measured on the lent one (8192^3 bf16, ~790 TFLOP/s; its datasheet
# says 989); H100 and A100 from their datasheets.
PEAK_TFLOPS = {"H100": 989.0, "H200": 790.0, "A100": 312.0}


def whetstone_run(a) -> dict:
    """One measurement of Whetstone's step (runs in a child process)."""
    import random

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM, Trainer, TrainingArguments

    sys.path.insert(0, str(BASELINE.parent))
    import hf_baseline as hb  # the peer's shapes, rows and timer: identical inputs

    from engine import config as C
    from engine.modeling import liger, varlen
    from engine.modeling.attention import packed_kernel
    from engine.modeling.load import cpu_has_native_bf16
    from engine.train import collate as batching
    from engine.train.loss import FusedHeadLoss, trained_positions_loss

    torch.manual_seed(0)
    random.seed(0)
    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    with torch.device("cuda" if cuda else "cpu"):  # random weights made where they are used (init is not timed)
        model = LlamaForCausalLM(LlamaConfig(vocab_size=a.vocab, max_position_embeddings=4096,
                                             **hb.SHAPES[a.size])).to(dtype)
    if kernel := packed_kernel(dtype):  # what load_model picks: flash-attn, or torch's own varlen kernel
        model.set_attn_implementation(kernel)
    model.config.use_cache = False
    # What a run gets by default (train.liger_kernels): Liger's kernels and the fused head where installed.
    cfg = C.replace(C.RunConfig(), "train.liger_kernels", a.liger != "off")
    kernels = liger.apply(model, cfg)
    model = get_peft_model(model, LoraConfig(r=a.rank, lora_alpha=2 * a.rank, lora_dropout=0.0,
                                             target_modules=hb.TARGETS, task_type="CAUSAL_LM"))
    head = liger.fuse_head(model, cfg)
    loss = FusedHeadLoss(head) if head is not None else trained_positions_loss
    rows = hb.make_rows(a.steps * a.bs, a.maxlen, a.vocab)
    timer = hb.StepTimer(cuda)
    args = TrainingArguments(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=a.bs, max_steps=a.steps,
                             bf16=cuda or cpu_has_native_bf16(), learning_rate=1e-4, logging_steps=10**6, save_strategy="no", report_to=[],
                             gradient_checkpointing=a.gc, dataloader_num_workers=0, remove_unused_columns=False,
                             gradient_checkpointing_kwargs={"use_reentrant": False} if a.gc else None,
                             use_cpu=not cuda)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    # What a user's run gets by default: packing where a variable-length kernel exists, else padded batches;
    # logits only where the loss needs them; on CPU bf16 autocast where the processor has native bf16.
    collate = batching.packed(True) if batching.use_packing("auto", dtype) else batching.padded(0, True)
    Trainer(model=model, args=args, train_dataset=rows, data_collator=collate,
            compute_loss_func=loss, callbacks=[timer]).train()
    wall = time.perf_counter() - t0
    warm = min(5, len(timer.times) // 2)
    step_s = sorted(timer.times[warm:])[len(timer.times[warm:]) // 2]
    tokens_per_step = sum(len(r["input_ids"]) for r in rows) / a.steps
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else resource.getrusage(
        resource.RUSAGE_SELF).ru_maxrss / 2**20
    n_params = sum(p.numel() for p in model.parameters())
    return {"peer": "whetstone", "shape": a.size, "bs": a.bs, "maxlen": a.maxlen,
            "device": torch.cuda.get_device_name() if cuda else "cpu", "median_step_s": round(step_s, 4),
            "real_tokens_per_s": round(tokens_per_step / step_s), "peak_mem_gib": round(peak, 2),
            "wall_s": round(wall, 1), "params": n_params, "attention": model.config._attn_implementation,
            "packed": collate.packed, "liger": " ".join(kernels + ["fused_linear_cross_entropy"] * (head is not None)),
            "varlen_calls": dict(varlen.CALLS)}


def mfu(row: dict, params: int) -> str:
    peak = next((v for k, v in PEAK_TFLOPS.items() if k in row.get("device", "")), None)
    if not peak:
        return "-"
    return f"{100 * 4 * params * row['real_tokens_per_s'] / (peak * 1e12):.1f}%"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="135m")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bs", type=int, default=4)
    ap.add_argument("--maxlen", type=int, default=256)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--gc", action="store_true", help="gradient checkpointing (both sides)")
    ap.add_argument("--liger", choices=["auto", "off"], default="auto",
                    help="Liger kernels and the fused head: auto = as a run gets them (CUDA with liger-kernel)")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(whetstone_run(a)))
        return 0
    common = ["--size", a.size, "--steps", str(a.steps), "--bs", str(a.bs), "--maxlen", str(a.maxlen),
              "--vocab", str(a.vocab), "--rank", str(a.rank)] + (["--gc"] if a.gc else [])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    results = []
    for cmd in ([sys.executable, str(BASELINE), *common],
                [sys.executable, str(Path(__file__).resolve()), "--child", *common, "--liger", a.liger]):
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
        line = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
        if out.returncode != 0 or not line:
            print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
            return 1
        results.append(json.loads(line[-1]))
    base, ours = results
    params = ours["params"]
    print(f"\nshape {a.size}, batch {a.bs}, lengths up to {a.maxlen}, LoRA r{a.rank} on all linear layers, "
          f"{a.steps} steps, grad ckpt {a.gc}, device {ours['device']}")
    print(f"{'':28} {'real tok/s':>11} {'peak GiB':>9} {'MFU':>7} {'median step s':>14}")
    for r in (base, ours):
        print(f"{r['peer']:28} {r['real_tokens_per_s']:>11} {r['peak_mem_gib']:>9} {mfu(r, params):>7} "
              f"{r['median_step_s']:>14}")
    print(f"{'ratio (whetstone / baseline)':28} {ours['real_tokens_per_s'] / base['real_tokens_per_s']:>10.2f}x "
          f"{ours['peak_mem_gib'] / base['peak_mem_gib']:>8.2f}x")
    print(json.dumps({"baseline": base, "whetstone": ours}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
