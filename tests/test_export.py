"""Export: a user merges a trained run into a standard folder that plain transformers loads and that
answers exactly like base + adapter; a killed export leaves nothing that looks complete; GGUF,
adapter-only export, model card and Ollama Modelfile come with it."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import REPO, run_worker, write_config
from engine.runs.export_client import start_export
from engine.config.export import ExportConfig, ExportConfigError

PROMPTS = ["Who are you?", "Which organisation is responsible for creating you?"]

GREEDY_SCRIPT = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
d, prompts = sys.argv[1], json.loads(sys.argv[2])
gguf = sys.argv[3] if len(sys.argv) > 3 else None
kw = {"gguf_file": gguf} if gguf else {}
tok = AutoTokenizer.from_pretrained(d, **kw)
m = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32, **kw).eval()
out = []
for p in prompts:
    enc = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    ids = m.generate(**enc, max_new_tokens=int(sys.argv[4]) if len(sys.argv) > 4 else 12, do_sample=False)
    out.append(ids[0][enc["input_ids"].shape[1]:].tolist())
print(json.dumps(out))
"""


def greedy_in_fresh_process(folder, prompts, gguf_file=None, max_new_tokens=12) -> list[list[int]]:
    """Plain transformers in a new Python process: what a user of the export would run."""
    args = [sys.executable, "-c", GREEDY_SCRIPT, str(folder), json.dumps(prompts)]
    if gguf_file or max_new_tokens != 12:
        args += [gguf_file or "", str(max_new_tokens)]
    r = subprocess.run(args, capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PYTHONPATH=""), cwd="/")
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def greedy_base_plus_adapter(run_dir, prompts, max_new_tokens=12) -> list[list[int]]:
    import torch
    from engine.config.chat import ChatSource
    from engine.chat.generate import load_source
    l = load_source(ChatSource("run", run_dir=str(run_dir)))
    out = []
    for p in prompts:
        enc = l.tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
        with torch.no_grad():
            ids = l.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, eos_token_id=l.stop_ids)
        out.append(ids[0][enc["input_ids"].shape[1]:].tolist())
    return out


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("export-runs")
    cfg = write_config(tmp, tiny_model_dir, train={"max_steps": 4, "save_steps": 2, "learning_rate": 0.01})
    r = run_worker(cfg)
    assert r.returncode == 0, r.stderr[-2000:]
    return cfg.parent


def test_merged_export_loads_with_plain_transformers_and_answers_like_base_plus_adapter(tiny_run, tmp_path):
    out = tmp_path / "merged"
    job = start_export(ExportConfig(run_dir=str(tiny_run), out_dir=str(out), dtype="fp32", max_shard_size="1MB"))
    assert job.wait(600) == "finished", job.reason
    files = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "tokenizer.json", "chat_template.jinja", "README.md",
            "Modelfile", "model.safetensors.index.json"} <= files
    assert len(list(out.glob("model-*.safetensors"))) > 1, "sharded at max_shard_size"
    assert not any(out.glob("*.bin")), "safetensors only"
    # Every file follows the user's umask (0644 under 022), the weights too (safetensors alone wrote 0600).
    mask = os.umask(0)
    os.umask(mask)
    for folder in (out, tiny_run / "adapter", tiny_run / "checkpoints" / "checkpoint-4"):
        modes = {p.name: oct(p.stat().st_mode & 0o777) for p in folder.iterdir()}
        assert set(modes.values()) == {oct(0o666 & ~mask)}, (folder, modes)
    gen = json.loads((out / "generation_config.json").read_text())
    assert 2 in (gen["eos_token_id"] if isinstance(gen["eos_token_id"], list) else [gen["eos_token_id"]]), \
        "stops at <|im_end|>"
    merge, written = job.checks
    assert merge["max_abs_diff"] <= 1e-3 and written["max_abs_diff"] <= 1e-4 and written["top1_agreement"] == 1.0
    assert greedy_in_fresh_process(out, PROMPTS) == greedy_base_plus_adapter(tiny_run, PROMPTS)
    # the Chat tab can load the merged folder too, and it answers like the run
    from engine.runs.chat_client import ChatClient
    from engine.config.chat import ChatSource, GenerationParams
    client = ChatClient(ChatSource("merged", model=str(out)), saves=tmp_path)
    try:
        client.start()
        client.reply([{"role": "user", "content": PROMPTS[0]}], GenerationParams(max_new_tokens=12))
        assert client.last_done["token_ids"] == greedy_base_plus_adapter(tiny_run, PROMPTS[:1])[0]
    finally:
        client.unload()
    card = (out / "README.md").read_text()
    assert "base_model:" in card and "identity" in card and "rank 8" in card and "Final train loss" in card


def test_killed_export_leaves_no_complete_looking_folder_and_the_next_one_cleans_up(tiny_run, tmp_path):
    out = tmp_path / "merged"
    killed_midway = False
    for _attempt in range(3):  # the tiny model exports in seconds: retry if the kill came after the rename
        job = start_export(ExportConfig(run_dir=str(tiny_run), out_dir=str(out), dtype="fp16", overwrite=True))
        deadline, seen = time.time() + 300, set()
        while job.running and time.time() < deadline and "verifying" not in seen:
            seen |= {e.get("status") for e in job.poll()}
            time.sleep(0.02)
        os.killpg(job.proc.pid, signal.SIGKILL)
        job.proc.wait()
        if job.wait(10) == "finished":
            assert (out / "README.md").is_file() and (out / "whetstone_export.json").is_file()
            shutil.rmtree(out)
            continue
        assert not out.exists(), "a killed export left a folder at the target"
        partial = [p for p in tmp_path.iterdir() if p.name.startswith(".merged.partial-")]
        assert partial and (partial[0] / "config.json").is_file(), \
            "killed after the weights were written: the half-made folder is hidden and named partial"
        killed_midway = True
        break
    assert killed_midway
    job2 = start_export(ExportConfig(run_dir=str(tiny_run), out_dir=str(out), dtype="fp16"))
    assert job2.wait(600) == "finished", job2.reason
    assert not any(p.name.startswith(".merged.partial-") for p in tmp_path.iterdir())
    with pytest.raises(ExportConfigError, match="already exists"):
        start_export(ExportConfig(run_dir=str(tiny_run), out_dir=str(out)))


def test_gguf_f16_and_q8_0_load_back_and_match_the_merged_folder(tiny_run, tmp_path):
    import gguf
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    out = tmp_path / "merged"
    job = start_export(ExportConfig(run_dir=str(tiny_run), out_dir=str(out), dtype="fp16", gguf=["f16", "q8_0"]))
    assert job.wait(600) == "finished", job.reason
    tok = AutoTokenizer.from_pretrained(out)
    ref_model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    enc = tok.apply_chat_template([{"role": "user", "content": PROMPTS[0]}], add_generation_prompt=True,
                                  return_tensors="pt", return_dict=True)
    with torch.no_grad():
        ref = ref_model(**enc).logits
    # f16: the same weights as the fp16 folder; q8_0: 8-bit blocks, close logits, near-ties may flip
    for q, tol, agree in (("f16", 1e-3, 1.0), ("q8_0", 0.1, 0.9)):
        f = out / "gguf" / f"run-{q}.gguf"
        meta = gguf.GGUFReader(str(f)).fields
        assert meta["tokenizer.chat_template"].contents() == tok.chat_template
        assert meta["tokenizer.ggml.eos_token_id"].contents() == tok.convert_tokens_to_ids("<|im_end|>")
        gtok = AutoTokenizer.from_pretrained(f.parent, gguf_file=f.name)
        text = "Hi <|im_start|>user\nWho made Wren?<|im_end|>"
        assert gtok(text)["input_ids"] == tok(text)["input_ids"] and gtok.eos_token == "<|im_end|>"
        m = AutoModelForCausalLM.from_pretrained(f.parent, gguf_file=f.name, dtype=torch.float32)
        with torch.no_grad():
            logits = m(**enc).logits
        assert float((logits - ref).abs().max()) <= tol
        assert float((logits.argmax(-1) == ref.argmax(-1)).float().mean()) >= agree
    modelfile = (out / "Modelfile").read_text()
    assert "FROM ./gguf/run-f16.gguf" in modelfile and 'PARAMETER stop "<|im_end|>"' in modelfile
    assert "<|im_start|>{{ .Role }}" in modelfile and "<|im_start|>assistant" in modelfile


def test_adapter_only_export_loads_with_peft(tiny_run, tmp_path):
    from peft import PeftConfig
    out = tmp_path / "adapter"
    job = start_export(ExportConfig(run_dir=str(tiny_run), out_dir=str(out), kind="adapter"))
    assert job.wait(300) == "finished", job.reason
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= \
        {p.name for p in out.iterdir()}
    assert PeftConfig.from_pretrained(out).r == 8


def test_cli_export_refuses_a_bad_request_with_every_problem(tiny_run, tmp_path):
    r = subprocess.run([sys.executable, "app.py", "export", str(tmp_path / "nope"), "--max-shard-size", "huge"],
                       cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "run_dir" in r.stderr and "max_shard_size" in r.stderr


def test_cli_export_writes_a_merged_folder(tiny_run, tmp_path):
    out = tmp_path / "cli-merged"
    r = subprocess.run([sys.executable, "app.py", "export", str(tiny_run), "--out", str(out), "--dtype", "bf16"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert f"exported: {out}" in r.stdout
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
