"""Out of memory: the run fails with the reason and the setting to lower, and the memory is given back.

Host memory runs out for real on any machine: the worker is started under an address-space limit
(RLIMIT_AS, 6 GiB) and asked for a batch whose logits alone need more, so PyTorch's CPU allocator
refuses, as it does for a laptop user whose batch does not fit in RAM. The CUDA one needs a GPU (the
H200): the test takes most of the GPU's memory itself, so the worker's first steps really run out.
Without a GPU it skips, saying so.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys

import pytest

from engine import config as C
from engine.runs.events import read_all
from engine.runs.failures import explain
from engine.runs.store import summarize
from tests.conftest import REPO, run_worker


def test_an_out_of_memory_error_names_the_settings_to_lower():
    import torch
    cfg = C.replace(C.replace(C.RunConfig(), "train.batch_size", 16), "data.cutoff_len", 2048)
    msg = explain(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), cfg)
    assert msg.startswith("Out of memory.")
    for words in ("train.batch_size (e.g. 16 -> 8)", "train.grad_accum", "train.gradient_checkpointing",
                  "data.cutoff_len (now 2048)", "qlora"):
        assert words in msg, (words, msg)


def _limit_address_space() -> None:  # runs in the child, before exec
    resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))


def test_a_real_host_out_of_memory_fails_the_run_in_plain_words(make_config, tmp_path):
    """16 rows x 2048 tokens x a 49k vocabulary: the logits alone are 6.4 GB, over the worker's 6 GiB limit."""
    data = tmp_path / "long.jsonl"
    data.write_text("\n".join(json.dumps({"text": " ".join(f"word{i % 50}" for i in range(2500))})
                              for _ in range(16)), encoding="utf-8")
    cfg = make_config(data={"datasets": [str(data)], "cutoff_len": 2048},
                      method={"stage": "pt", "finetuning": "full"},
                      train={"max_steps": 2, "batch_size": 16, "packing": "off"})
    # Few threads and malloc arenas, so the limit bounds the memory a batch may take, not thread bookkeeping.
    env = dict(os.environ, PYTHONUNBUFFERED="1", MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="2")
    out = subprocess.run([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=600, preexec_fn=_limit_address_space)
    assert out.returncode == 1, out.stderr[-3000:]
    assert "can't allocate memory" in out.stderr, out.stderr[-3000:]  # it really ran out, not some other failure
    err = [e for e in read_all(cfg.parent / "events.jsonl") if e["kind"] == "error"][-1]
    assert err["message"].startswith("Out of memory (this machine's RAM). To fit:"), err["message"]
    for words in ("train.batch_size (e.g. 16 -> 8)", "train.gradient_checkpointing", "data.cutoff_len (now 2048)"):
        assert words in err["message"], (words, err["message"])
    s = summarize(cfg.parent)
    assert s.status == "failed" and s.reason == err["message"]


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except Exception:
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU: a real out-of-memory is triggered on the GPU; "
                                        "this machine has none")
def test_a_real_cuda_out_of_memory_fails_the_run_in_plain_words_and_frees_the_gpu(make_config, default_model_dir):
    import torch
    free, _total = torch.cuda.mem_get_info()
    # Leave the worker ~1.5 GiB: enough for its CUDA context and the 135M model's weights, not for full
    # fine-tuning's gradients and AdamW state (~2 GiB more) plus activations at batch 64.
    hog = torch.empty(max(0, free - int(1.5 * 2 ** 30)), dtype=torch.uint8, device="cuda")
    try:
        cfg = make_config(model={"name_or_path": str(default_model_dir), "dtype": "fp32"},
                          method={"finetuning": "full"}, data={"cutoff_len": 512},
                          train={"max_steps": 3, "batch_size": 64, "packing": False})
        out = run_worker(cfg, timeout=600)
    finally:
        del hog
        torch.cuda.empty_cache()
    assert out.returncode == 1, out.stderr[-3000:]
    err = [e for e in read_all(cfg.parent / "events.jsonl") if e["kind"] == "error"][-1]
    assert err["message"].startswith("Out of memory."), err["message"]
    assert "train.batch_size" in err["message"] and "gradient_checkpointing" in err["message"]
    s = summarize(cfg.parent)
    assert s.status == "failed" and s.reason == err["message"]
    free_after, _ = torch.cuda.mem_get_info()
    print(json.dumps({"oom_message": err["message"], "ui_status": s.status, "ui_reason": s.reason,
                      "free_gib_before": round(free / 2**30, 2), "free_gib_after": round(free_after / 2**30, 2)}))
    assert free_after >= free - 2 ** 30, "the worker's GPU memory was given back when it exited"
