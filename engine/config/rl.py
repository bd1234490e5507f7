"""The run config's reinforcement-learning section (method.rl): the grpo and ppo stages' sampling, the
policy objective's settings, and the reward functions with their weights; where a run named as an input
(the reward model, the starting policy) lives, and the problems of these settings. Light: stdlib + yaml.

What the two stages run (trl 1.x's GRPOTrainer for both; trl removed PPOTrainer and its value-head models,
and no maintained package offers PPO with a value network for the pinned transformers / peft):
- grpo: for each prompt, `generations` completions are sampled and scored; a completion's advantage is its
  reward minus its group's mean, over the group's spread; the policy follows PPO's clipped objective on
  those advantages, with a KL penalty (beta) to the frozen starting model.
- ppo: RLHF step 3, the same objective (clipped ratio, KL penalty to the frozen starting policy, a reward
  model or reward functions), with the same group-relative advantages: there is no learned value network
  and no GAE, so this is not the full PPO of the InstructGPT paper.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from engine.config.schema import F

RL_STAGES = ("grpo", "ppo")
# Reward sources, in the order the worker combines them: (weight field, the name its metrics carry).
REWARDS = (("weight_exact_match", "exact_match"), ("weight_contains_answer", "contains_answer"),
           ("weight_format", "format"), ("weight_length", "length"), ("weight_reward_model", "reward_model"),
           ("weight_python", "python_reward"))
REWARD_LABELS = {"exact_match": "exact match", "contains_answer": "contains the answer", "format": "format",
                 "length": "length", "reward_model": "reward model", "python_reward": "Python reward"}
RL_FINETUNING = ("lora", "qlora", "full", "freeze")

PPO_IS = ("PPO's clipped objective with a KL penalty to the frozen starting policy, but with group-relative "
          "advantages (each completion's reward against the other samples for its prompt): no value network, "
          "no GAE. trl 1.x removed PPOTrainer, and no maintained package offers PPO with a value head for "
          "this transformers / peft.")


@dataclass
class RLSection:
    generations: int = F(4, "grpo / ppo: completions sampled per prompt. Each is scored against the others of "
                            "its group, so at least 2; more gives steadier advantages, costs more generation. "
                            "train.batch_size x train.grad_accum counts completions and must be a multiple.",
                         min=2, max=256, label="generations per prompt")
    max_completion_length: int = F(64, "grpo / ppo: longest completion sampled, in tokens.", min=1, max=32768,
                                   label="max completion length")
    temperature: float = F(0.8, "grpo / ppo: sampling temperature of the completions (higher = more varied).",
                           min_exclusive=0.0, max=5.0, label="sampling temperature")
    beta: float = F(0.04, "grpo / ppo: weight of the KL penalty that keeps the policy near the frozen starting "
                          "model (the reference). 0 = no reference model and no KL term (grpo only; faster).",
                    min=0.0, max=10.0, label="KL beta")
    epsilon: float = F(0.2, "grpo / ppo: clip range of the probability ratio (PPO's epsilon).", min_exclusive=0.0,
                       max=1.0, label="clip epsilon")
    iterations: int = F(1, "grpo / ppo: optimisation passes over each batch of completions (PPO epochs). With 1 "
                           "the policy never drifts from the one that sampled, so the clip never binds.",
                        min=1, max=64, label="passes per batch")
    weight_exact_match: float = F(0.0, "Reward 'exact match' (weight; 0 = off): 1 when the completion's final "
                                       "answer (after its last 'Answer:', else its last line) equals the row's "
                                       "reference answer, ignoring case, spaces and a final period.",
                                  label="reward: exact match (weight)")
    weight_contains_answer: float = F(0.0, "Reward 'contains the answer' (weight; 0 = off): 1 when the reference "
                                           "answer appears in the completion as a whole word or number.",
                                      label="reward: contains the answer (weight)")
    weight_format: float = F(0.0, "Reward 'format' (weight; 0 = off): 1 when the completion matches "
                                  "method.rl.format_regex.", label="reward: format (weight)")
    format_regex: str = F(r"(?:^|\n)Answer: *-?\d[\d,.]*\s*$",
                          "The required format, a Python regular expression searched in each completion. The "
                          "default asks for a final line 'Answer: <number>'.", label="format regex")
    weight_length: float = F(0.0, "Reward 'length' (weight; 0 = off): 1 at method.rl.length_target tokens, "
                                  "falling linearly to 0 at none and at twice the target.",
                             label="reward: length (weight)")
    length_target: int = F(32, "The completion length, in tokens, that the length reward prefers.", min=1,
                            max=32768, label="length target (tokens)")
    weight_reward_model: float = F(0.0, "Reward model (weight; 0 = off): the score of the reward model trained "
                                        "by an rm run (method.rl.reward_model_run).",
                                   label="reward: reward model (weight)")
    reward_model_run: str = F("", "The rm run whose reward model scores completions: its folder, or its name in "
                                  "the saves folder.", label="reward model run")
    weight_python: float = F(0.0, "Your Python reward (weight; 0 = off): the function `reward(prompts, "
                                  "completions, **columns) -> list[float]` in method.rl.reward_file.",
                             label="reward: Python file (weight)")
    reward_file: str = F("", "A local .py file defining reward(prompts, completions, **columns): prompts and "
                             "completions are lists of strings, columns the rows' other fields (answer = the "
                             "reference). It runs inside the training worker with your user's rights.",
                         label="reward file (.py)")
    answer_column: str = F("answer", "The column that holds each row's reference answer; rows without it use "
                                     "their reply (alpaca output, last assistant turn, or chosen).",
                           label="reference answer column")
    policy_run: str = F("", "Start the policy from this run's LoRA / QLoRA adapter (its folder or name, e.g. the "
                            "sft run of an RLHF chain): the adapter keeps training and is the frozen reference. "
                            "Empty = start from the base model. For a full / freeze run, set model.name_or_path "
                            "to its model/ folder instead.", label="start from run")


def weights(rl: RLSection) -> list[tuple[str, float]]:
    """(reward name, weight) of every reward that is on, in the order the worker combines them."""
    return [(name, getattr(rl, field)) for field, name in REWARDS if getattr(rl, field) != 0]


def run_folder(value: str, saves: Path) -> Path:
    """Where a run named by folder or by name lives: an existing path as given, else saves/<value>."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.is_dir():
        return p
    from engine.runs.paths import REPO
    for cand in (saves / value, REPO / value):
        if cand.is_dir():
            return cand
    return saves / value


def local_file(value: str) -> Path:
    """A user's file as given (absolute, or relative to this directory), else relative to the repository."""
    p = Path(value).expanduser()
    if p.is_absolute() or p.exists():
        return p
    from engine.runs.paths import REPO
    return REPO / p if (REPO / p).exists() else p


def _run_stage(run: Path) -> str | None:
    """The stage a run trained (from its config.yaml), or None when it has no readable config."""
    import yaml
    try:
        data = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        return str((data.get("method") or {}).get("stage", "sft"))
    except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return None


def _run_model(run: Path) -> str:
    import yaml
    try:
        data = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8")) or {}
        return str((data.get("model") or {}).get("name_or_path", ""))
    except (OSError, yaml.YAMLError, AttributeError, UnicodeDecodeError):
        return ""


def reward_model_problem(value: str, saves: Path) -> str | None:
    """Why method.rl.reward_model_run cannot serve as the reward model, or None."""
    from engine.runs.paths import unusable_path
    if not value.strip():
        return "name the rm run whose reward model scores the completions (its folder or name)"
    bad = unusable_path(value)
    if bad:
        return bad
    run = run_folder(value, saves)
    if not run.is_dir():
        return f"no run folder at {value!r} (looked in {saves} too); train a reward model with stage rm first"
    stage = _run_stage(run)
    if stage is None:
        return f"{run} has no readable config.yaml: not a Whetstone run folder"
    if stage != "rm":
        return (f"{run.name} is a {stage} run, not a reward model; pick a run of stage rm (it trains the scalar "
                "head that scores replies)")
    if not any((run / d).is_dir() for d in ("adapter", "model")):
        return f"{run.name} has no adapter/ or model/ folder: that rm run has not finished; let it finish first"
    return None


def policy_run_problem(value: str, cfg) -> str | None:
    """Why method.rl.policy_run cannot start the policy, or None."""
    from engine.runs.paths import saves_dir, unusable_path
    bad = unusable_path(value)
    if bad:
        return bad
    run = run_folder(value, saves_dir(cfg.output.saves_dir))
    if not run.is_dir():
        return f"no run folder at {value!r}; give the sft run's folder or its name in the saves folder"
    stage = _run_stage(run)
    if stage is None:
        return f"{run} has no readable config.yaml: not a Whetstone run folder"
    if stage == "rm":
        return f"{run.name} is a reward model (stage rm); name it in method.rl.reward_model_run instead"
    if (run / "model").is_dir() and not (run / "adapter").is_dir():
        return (f"{run.name} trained every weight (its output is model/); set model.name_or_path to "
                f"{run / 'model'} and leave method.rl.policy_run empty")
    if not (run / "adapter" / "adapter_config.json").is_file():
        return f"{run.name} has no finished adapter (adapter/adapter_config.json); let it finish first"
    base = _run_model(run)
    if base and base != cfg.model.name_or_path:
        return (f"{run.name} adapted {base!r}, but model.name_or_path is {cfg.model.name_or_path!r}; set "
                "model.name_or_path to the same base model")
    if cfg.method.finetuning not in ("lora", "qlora"):
        return f"continuing a run's adapter needs method.finetuning lora or qlora, not {cfg.method.finetuning}"
    return None


def rl_problems(cfg, check_files: bool = True, world: int = 1) -> list[str]:
    """Problems of the method.rl settings for a grpo / ppo run (none for other stages)."""
    m = cfg.method
    if m.stage not in RL_STAGES:
        return []
    rl, p = m.rl, []
    on = weights(rl)
    if not on:
        p.append(f"method.rl: the {m.stage} stage needs at least one reward; give one of the reward weights "
                 "(exact match, contains the answer, format, length, reward model, Python file) a non-zero value")
    names = [n for n, _ in on]
    if "format" in names:
        try:
            re.compile(rl.format_regex)
        except re.error as e:
            p.append(f"method.rl.format_regex: {rl.format_regex!r} is not a valid regular expression ({e})")
    if m.stage == "ppo" and rl.beta == 0:
        p.append("method.rl.beta: the ppo stage keeps the policy near its start with a KL penalty; give beta a "
                 "value above 0 (e.g. 0.04), or use stage grpo to train without one")
    if m.finetuning not in RL_FINETUNING:
        p.append(f"method.finetuning: {m.finetuning} is not supported for {m.stage}; use lora, qlora, full or "
                 "freeze")
    completions = cfg.train.batch_size * cfg.train.grad_accum * world
    if completions % rl.generations:
        p.append(f"train.batch_size: each step samples train.batch_size x train.grad_accum x processes = "
                 f"{completions} completions, which must be a whole number of prompts x method.rl.generations "
                 f"({rl.generations}); e.g. set train.batch_size to {rl.generations}")
    elif (cfg.data.val_size > 0 or cfg.data.eval_datasets) and (cfg.train.batch_size * world) % rl.generations:
        p.append(f"train.batch_size: evaluation samples train.batch_size x processes completions at a time, which "
                 f"must be a multiple of method.rl.generations ({rl.generations}); raise train.batch_size or "
                 "turn evaluation off (data.val_size 0)")
    if not check_files:
        return p
    from engine.runs.paths import saves_dir
    if "reward_model" in names:
        err = reward_model_problem(rl.reward_model_run, saves_dir(cfg.output.saves_dir))
        if err:
            p.append(f"method.rl.reward_model_run: {err}")
    if "python_reward" in names:
        err = reward_file_problem(rl.reward_file)
        if err:
            p.append(f"method.rl.reward_file: {err}")
    if rl.policy_run.strip():
        err = policy_run_problem(rl.policy_run, cfg)
        if err:
            p.append(f"method.rl.policy_run: {err}")
    return p


def reward_file_problem(value: str) -> str | None:
    """Why method.rl.reward_file cannot be loaded (checked without running it), or None."""
    from engine.runs.paths import unusable_path
    if not value.strip():
        return "give the path of a local .py file that defines reward(prompts, completions, **columns)"
    bad = unusable_path(value)
    if bad:
        return bad
    p = local_file(value)
    if not p.exists():
        return f"no file at {value!r}; give the path of a local .py file"
    if not p.is_file():
        return f"{value!r} is a folder; give the path of a .py file"
    if p.suffix != ".py":
        return f"{value!r} is not a Python file (.py)"
    if not os.access(p, os.R_OK):
        return f"{value!r} cannot be read (permissions)"
    return None


REWARD_FILE_WARNING = ("method.rl.reward_file is on: {file} will be imported and run inside the training worker "
                       "with your user's rights (files, keys, network). Use only a file you wrote or have read.")


def warnings(cfg) -> list[str]:
    """Allowed but risky: a Python reward file runs as code, like trust_remote_code."""
    rl = cfg.method.rl
    if cfg.method.stage in RL_STAGES and rl.weight_python != 0 and rl.reward_file.strip():
        return [REWARD_FILE_WARNING.format(file=rl.reward_file)]
    return []


def applies(key: str, cfg) -> bool:
    """Whether a method.rl field means anything for this config."""
    stage, rl = cfg.method.stage, cfg.method.rl
    if stage not in RL_STAGES:
        return False
    if key == "method.rl.format_regex":
        return rl.weight_format != 0
    if key == "method.rl.length_target":
        return rl.weight_length != 0
    if key == "method.rl.reward_model_run":
        return rl.weight_reward_model != 0 or bool(rl.reward_model_run)
    if key == "method.rl.reward_file":
        return rl.weight_python != 0 or bool(rl.reward_file)
    return True
