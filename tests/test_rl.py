"""Reinforcement learning on the tiny model: grpo samples completions for prompts and follows its rewards
(built-in ones and a user's Python file); the RLHF chain trains sft, then a reward model, then ppo from the
sft run's adapter against that reward model. Every run logs the reward, KL, completion-length and clip
metrics the charts draw, writes sample completions with their rewards, and saves an adapter that loads
back. Bad reward inputs are refused with messages that name the file or the run."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_worker, write_config
from engine import config as C
from engine.runs.metrics import BY_NAME

PROMPTS = {"datasets": ["arithmetic"], "max_samples": 8, "cutoff_len": 128}
# Varies with the text, so the random tiny model's completions get different rewards and the policy moves.
REWARD_PY = "def reward(prompts, completions, answer, **columns):\n" \
            "    return [float(len(set(c)) % 7) / 7 for c in completions]\n"


def events(cfg_path: Path) -> list[dict]:
    return [json.loads(line) for line in (cfg_path.parent / "events.jsonl").read_text().splitlines()]


def finished(cfg_path: Path, out: list | None = None) -> list[dict]:
    r = run_worker(cfg_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    if out is not None:
        out.append(r.stdout)
    ev = events(cfg_path)
    assert ev[-1]["kind"] == "status" and ev[-1]["status"] == "finished", ev[-3:]
    return ev


def lora_b_moved(adapter: Path) -> bool:
    """LoRA starts with B = 0: any non-zero B means the policy was updated."""
    from safetensors.torch import load_file
    weights = load_file(str(adapter / "adapter_model.safetensors"))
    return any(float(v.abs().max()) > 0 for k, v in weights.items() if "lora_B" in k)


def test_grpo_trains_on_builtin_and_python_rewards(make_config, tmp_path):
    from engine.chat.generate import answer, load_run
    reward_file = tmp_path / "my_reward.py"
    reward_file.write_text(REWARD_PY)
    cfg_path = make_config(data=PROMPTS, method={"stage": "grpo", "finetuning": "lora", "rl": {
        "generations": 2, "max_completion_length": 8, "iterations": 2, "weight_exact_match": 1.0,
        "weight_contains_answer": 1.0, "weight_format": 0.5, "weight_length": 0.5, "length_target": 4,
        "weight_python": 1.0, "reward_file": str(reward_file)}},
        train={"max_steps": 3, "batch_size": 4, "save_steps": 100, "learning_rate": 0.01})
    ev = finished(cfg_path)
    train = [e for e in ev if e["kind"] == "train"]
    assert len(train) == 3
    for key in ("loss", "kl", "clip_ratio/region_mean"):  # the objective's, every step
        assert all(key in e for e in train), key
    # sampling's and the rewards': at steps 1 and 3, where the batch was sampled (iterations = 2 passes each)
    sampled = [e for e in train if e["step"] in (1, 3)]
    for key in ("reward", "reward_std", "completions/mean_length",
                *(f"rewards/{n}/mean" for n in ("exact_match", "contains_answer", "format", "length", "python_reward"))):
        assert all(key in e for e in sampled), key
    assert all(e["completions/mean_length"] <= 8 for e in sampled)
    # every number logged is a metric of the one table the charts draw from
    logged = {k for e in train for k, v in e.items() if isinstance(v, float)} - {"t", "epoch"}
    assert logged <= set(BY_NAME), logged - set(BY_NAME)
    samples = [e for e in ev if e["kind"] == "samples"]
    assert samples and samples[0]["step"] == 1
    row = samples[0]["rows"][0]
    assert row["prompt"].startswith("What is") and isinstance(row["completion"], str)
    assert set(row["rewards"]) == {"exact_match", "contains_answer", "format", "length", "python_reward"}
    assert row["reward"] == pytest.approx(sum(w * row["rewards"][n] for n, w in (
        ("exact_match", 1), ("contains_answer", 1), ("format", 0.5), ("length", 0.5), ("python_reward", 1))), abs=1e-3)
    adapter = cfg_path.parent / "adapter"
    assert lora_b_moved(adapter)
    model, tok = load_run(cfg_path.parent)
    assert isinstance(answer(model, tok, [{"role": "user", "content": "What is 2 + 2?"}], max_new_tokens=4), str)


def test_grpo_trains_a_qlora_policy(make_config, tmp_path):
    """The policy in 4-bit (bitsandbytes' CPU backend) with LoRA on top: it samples, learns and saves."""
    from engine.chat.generate import answer, load_run
    reward_file = tmp_path / "my_reward.py"
    reward_file.write_text(REWARD_PY)
    cfg_path = make_config(data=PROMPTS, method={"stage": "grpo", "finetuning": "qlora", "rl": {
        "generations": 2, "max_completion_length": 6, "weight_python": 1.0, "reward_file": str(reward_file)}},
        train={"max_steps": 2, "batch_size": 4, "save_steps": 100, "learning_rate": 0.01})
    ev = finished(cfg_path)
    resolved = next(e for e in ev if e["kind"] == "resolved")
    assert resolved["quantization"] == "4bit"
    train = [e for e in ev if e["kind"] == "train"]
    assert len(train) == 2 and all("reward" in e and "kl" in e for e in train)
    adapter = cfg_path.parent / "adapter"
    assert lora_b_moved(adapter)
    model, tok = load_run(cfg_path.parent)
    assert isinstance(answer(model, tok, [{"role": "user", "content": "What is 2 + 2?"}], max_new_tokens=4), str)


@pytest.fixture(scope="module")
def chain(tmp_path_factory, tiny_model_dir) -> Path:
    """RLHF steps 1 and 2 on the tiny model: an sft run and an rm run, in one saves folder."""
    saves = tmp_path_factory.mktemp("rlhf")
    common = dict(train={"max_steps": 2, "batch_size": 4, "save_steps": 100})
    finished(write_config(saves, tiny_model_dir, output={"run_name": "rlhf-sft", "saves_dir": str(saves)},
                          data={"datasets": ["identity"], "max_samples": 8, "cutoff_len": 96}, **common))
    finished(write_config(saves, tiny_model_dir, output={"run_name": "rlhf-rm", "saves_dir": str(saves)},
                          method={"stage": "rm", "finetuning": "lora"},
                          data={"datasets": ["preference_demo"], "max_samples": 4, "cutoff_len": 96}, **common))
    return saves


def test_ppo_continues_the_sft_adapter_against_the_reward_model(chain, tiny_model_dir):
    from safetensors.torch import load_file

    from engine.chat.generate import answer, load_run
    cfg_path = write_config(chain, tiny_model_dir, output={"run_name": "rlhf-ppo", "saves_dir": str(chain)},
                            data={"datasets": ["preference_demo"], "max_samples": 4, "cutoff_len": 128},
                            method={"stage": "ppo", "finetuning": "lora", "rl": {
                                "generations": 2, "max_completion_length": 8, "beta": 0.1, "iterations": 2,
                                "weight_reward_model": 1.0, "reward_model_run": "rlhf-rm", "policy_run": "rlhf-sft"}},
                            train={"max_steps": 2, "batch_size": 4, "save_steps": 100, "learning_rate": 0.01})
    C.load(cfg_path)  # the run names resolve in the saves folder
    stdout: list[str] = []
    ev = finished(cfg_path, stdout)
    assert "policy: continuing the adapter of rlhf-sft" in stdout[0]
    train = [e for e in ev if e["kind"] == "train"]
    assert all("kl" in e for e in train)
    sampled = [e for e in train if e["step"] == 1]  # 2 passes (iterations) over the batch sampled at step 1
    assert sampled and all("rewards/reward_model/mean" in e for e in sampled)
    assert sampled[0]["reward_std"] > 0  # the reward model told the completions apart
    out = cfg_path.parent / "adapter"
    assert not (out / "ref").exists()  # only the trained adapter is saved, not trl's frozen copy
    sft = load_file(str(chain / "rlhf-sft" / "adapter" / "adapter_model.safetensors"))
    ppo = load_file(str(out / "adapter_model.safetensors"))
    assert set(sft) == set(ppo)  # the same adapter, continued
    assert any(float((sft[k] - ppo[k]).abs().max()) > 0 for k in sft)
    model, tok = load_run(cfg_path.parent)
    assert isinstance(answer(model, tok, [{"role": "user", "content": "Hi"}], max_new_tokens=4), str)


def test_a_reward_model_run_that_is_not_an_rm_run_is_refused_by_name(chain, tiny_model_dir):
    cfg_path = write_config(chain, tiny_model_dir, output={"run_name": "not-started", "saves_dir": str(chain)},
                            data=PROMPTS, method={"stage": "ppo", "rl": {"weight_reward_model": 1.0,
                                                                         "reward_model_run": "rlhf-sft"}})
    with pytest.raises(C.ConfigError) as e:
        C.load(cfg_path)
    assert "method.rl.reward_model_run: rlhf-sft is a sft run, not a reward model" in str(e.value)
    with pytest.raises(C.ConfigError) as e:
        C.load(cfg_path, overrides=["method.rl.reward_model_run=no-such-run"])
    assert "no run folder at 'no-such-run'" in str(e.value)


def test_a_reward_that_raises_ends_the_run_with_the_file_and_the_error(make_config, tmp_path):
    bad = tmp_path / "bad_reward.py"
    bad.write_text("def reward(prompts, completions, **columns):\n    return [1 / 0 for c in completions]\n")
    cfg_path = make_config(data=PROMPTS, method={"stage": "grpo", "rl": {
        "generations": 2, "max_completion_length": 4, "weight_python": 1.0, "reward_file": str(bad)}},
        train={"max_steps": 2, "batch_size": 4})
    r = run_worker(cfg_path)
    assert r.returncode == 1
    ev = events(cfg_path)
    assert not [e for e in ev if e["kind"] == "train"]  # it stopped at the first step
    err = next(e for e in ev if e["kind"] == "error")["message"]
    assert f"reward() in {bad.resolve()} raised ZeroDivisionError" in err
    assert ev[-1]["status"] == "failed" and ev[-1]["reason"] == err
