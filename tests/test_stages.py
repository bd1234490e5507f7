"""Every training stage runs: continued pre-training on plain text, and preference / reward training
on prompt-chosen-rejected rows through trl. Loss falls on a batch seen every step, the stage's own
metrics (rewards, margins, accuracies) reach the events the charts read, and the output loads back."""
from __future__ import annotations

import pytest

from engine import config as C
from test_methods import train_and_check

PAIRS = {"datasets": ["preference_demo"], "max_samples": 4, "cutoff_len": 96}
STAGES = {
    "pt": ({"datasets": ["pretrain_demo"], "max_samples": 4, "cutoff_len": 96}, {}),
    "dpo": (PAIRS, {"pref": {"beta": 0.1}}),
    "simpo": (PAIRS, {"pref": {"beta": 2.0, "simpo_gamma": 0.5}}),
    "orpo": (PAIRS, {}),
    "kto": ({**PAIRS, "max_samples": 2}, {}),
    "rm": (PAIRS, {}),
}
METRICS = {"dpo": "rewards/margins", "simpo": "rewards/margins", "orpo": "rewards/accuracies",
           "kto": "rewards/chosen", "rm": "accuracy"}


@pytest.mark.parametrize("stage", list(STAGES))
def test_stage_trains_and_loads_back(stage, make_config):
    from engine.chat.generate import answer, load_run
    data, method = STAGES[stage]
    cfg_path = make_config(data=data, method={"stage": stage, "finetuning": "lora", **method},
                           train={"max_steps": 5, "save_steps": 100, "batch_size": 4})
    ev = train_and_check(cfg_path)
    train_events = [e for e in ev if e["kind"] == "train"]
    if stage in METRICS:
        assert all(METRICS[stage] in e for e in train_events), train_events[0]
    model, tok = load_run(cfg_path.parent)
    if stage == "rm":  # a reward model scores a conversation with one number
        import torch
        text = tok.apply_chat_template([{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}],
                                       tokenize=False)
        with torch.no_grad():
            score = model(**tok(text, return_tensors="pt")).logits
        assert score.shape == (1, 1)
    else:
        assert isinstance(answer(model, tok, [{"role": "user", "content": "Hi"}], max_new_tokens=4), str)


def test_dpo_with_full_finetuning_uses_a_frozen_reference(make_config):
    cfg_path = make_config(data=PAIRS, method={"stage": "dpo", "finetuning": "full"},
                           train={"max_steps": 5, "save_steps": 100, "learning_rate": 1e-3})
    ev = train_and_check(cfg_path)
    assert all("rewards/accuracies" in e for e in ev if e["kind"] == "train")


def test_ppo_needs_a_reward_and_its_kl_penalty(tiny_model_dir):
    """ppo runs (tests/test_rl.py); without a reward, or with the KL penalty off, it is refused by field."""
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"model": {"name_or_path": str(tiny_model_dir)}, "method": {"stage": "ppo", "rl": {"beta": 0}}},
                    check_files=False)
    assert "method.rl: the ppo stage needs at least one reward" in str(e.value) and "method.rl.beta" in str(e.value)


def test_incompatible_method_and_stage_are_named(tiny_model_dir):
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"model": {"name_or_path": str(tiny_model_dir)},
                     "method": {"stage": "rm", "finetuning": "prompt", "lora": {"loraplus_lr_ratio": 4.0}}},
                    check_files=False)
    text = str(e.value)
    assert "method.finetuning" in text and "method.lora.loraplus_lr_ratio" in text
