"""Shared fixtures: a tiny random-initialised Llama with the default model's real tokenizer (built
in seconds), run configs pointing at it, and helpers to run the real worker as a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: uses the real 135M model (minutes on CPU)")
    config.addinivalue_line("markers", "browser: drives the web UI in headless Chromium")
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU")


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once to safetensors and cached."""
    from engine.modeling.load import ensure_embedded
    return ensure_embedded("smollm2-135m-instruct")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, default_model_dir) -> Path:
    """A 2-layer, 64-wide random Llama with the default model's tokenizer and chat template."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    out = tmp_path_factory.mktemp("tiny-llama")
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id, tie_word_embeddings=True)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def write_config(tmp_path: Path, model: Path | str, **sections) -> Path:
    """A run config YAML in tmp_path/<run>/config.yaml with the given section overrides."""
    import yaml
    data = {"model": {"name_or_path": str(model)},
            "data": {"datasets": ["identity"], "cutoff_len": 128},
            "method": {"finetuning": "lora", "lora": {"rank": 8, "alpha": 16}},
            "train": {"max_steps": 6, "batch_size": 4, "learning_rate": 0.003, "save_steps": 3,
                      "logging_steps": 1},
            "output": {"run_name": "run", "saves_dir": str(tmp_path)},
            "report": {"held_out": "none"}}  # the report card costs generation; its own tests turn it on
    for sec, vals in sections.items():
        data.setdefault(sec, {}).update(vals)
    run_dir = tmp_path / data["output"]["run_name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_worker(config_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real training worker to completion in a subprocess."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "engine.train", "--config", str(config_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture
def make_config(tmp_path, tiny_model_dir):
    def make(**sections) -> Path:
        return write_config(tmp_path, tiny_model_dir, **sections)
    return make
