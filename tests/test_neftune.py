"""NEFTune (train.neftune_alpha, LLaMA-Factory's neftune_noise_alpha): noise on the input embeddings while
training. The same seed and data give the same first loss twice; with the noise on, the first loss differs."""
from __future__ import annotations

import json

from conftest import run_worker, write_config


def first_loss(tmp_path, model, name: str, alpha: float) -> float:
    cfg = write_config(tmp_path, model, output={"run_name": name, "saves_dir": str(tmp_path)},
                       train={"max_steps": 1, "save_steps": 10, "neftune_alpha": alpha})
    out = run_worker(cfg)
    assert out.returncode == 0, out.stderr[-2000:]
    events = [json.loads(x) for x in (cfg.parent / "events.jsonl").read_text().splitlines()]
    return next(e["loss"] for e in events if e.get("kind") == "train")


def test_neftune_noise_changes_the_training_forward_and_off_is_reproducible(tmp_path, tiny_model_dir):
    plain = first_loss(tmp_path, tiny_model_dir, "plain", 0.0)
    again = first_loss(tmp_path, tiny_model_dir, "again", 0.0)
    noisy = first_loss(tmp_path, tiny_model_dir, "noisy", 50.0)
    assert plain == again  # deterministic without noise: the difference below is the noise
    assert noisy != plain
