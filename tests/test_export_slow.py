"""On the real 135M model: the quickstart run, merged and exported, loads with plain transformers in
a fresh process and answers held-out identity questions exactly as base + adapter does; its GGUF
f16 file answers the same as the merged folder, and q8_0 still knows the new name."""
from __future__ import annotations

import json
import shutil

import pytest

from conftest import REPO
from engine.runs.export_client import start_export
from engine.config.export import ExportConfig
from quickstart_export import exported_fp16_with_gguf
from quickstart_run import quickstart_run
from test_export import greedy_base_plus_adapter, greedy_in_fresh_process

pytestmark = pytest.mark.slow

HELD_OUT = [r["instruction"] for r in json.loads((REPO / "data" / "identity_eval.json").read_text())[:4]]


@pytest.mark.timeout(1800)  # run first, it also makes the shared fp16 export with its three GGUF files checked in llama.cpp
def test_quickstart_merged_export_and_gguf_answer_like_the_tuned_model(tmp_path):
    from transformers import AutoTokenizer
    run = quickstart_run(tmp_path / "saves")
    out = tmp_path / "merged"
    job = start_export(ExportConfig(run_dir=str(run), out_dir=str(out), dtype="fp32"))
    assert job.wait(1800) == "finished", job.reason
    tuned = greedy_base_plus_adapter(run, HELD_OUT, max_new_tokens=96)
    merged = greedy_in_fresh_process(out, HELD_OUT, max_new_tokens=96)
    assert merged == tuned
    tok = AutoTokenizer.from_pretrained(out)
    texts = [tok.decode(t, skip_special_tokens=True) for t in merged]
    assert all("Wren" in t or "Whetstone" in t for t in texts), texts
    assert all(t[-1] == tok.convert_tokens_to_ids("<|im_end|>") for t in merged), "replies end at <|im_end|>"
    # GGUF is written from an fp16 export: f16 GGUF holds exactly its weights, so it must answer the same
    out16, _ = exported_fp16_with_gguf()  # shared with test_gguf_llama_cpp_slow.py
    merged16 = greedy_in_fresh_process(out16, HELD_OUT, max_new_tokens=96)
    gguf_dir = out16 / "gguf"
    f16 = greedy_in_fresh_process(gguf_dir, HELD_OUT, gguf_file="quick-f16.gguf", max_new_tokens=96)
    assert f16 == merged16
    q8 = greedy_in_fresh_process(gguf_dir, HELD_OUT, gguf_file="quick-q8_0.gguf", max_new_tokens=96)
    q8_texts = [tok.decode(t, skip_special_tokens=True) for t in q8]
    assert sum("Wren" in t or "Whetstone" in t for t in q8_texts) >= 3, q8_texts
    print("merged:", texts, "\nq8_0:", q8_texts)
    shutil.rmtree(out)
