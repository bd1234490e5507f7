"""Reward functions of the grpo / ppo stages, as trl's GRPOTrainer calls them: built-in ones (exact match,
contains the answer, format, length), the reward model of an rm run, and the user's Python file, each
named for its metrics (rewards/<name>/mean) and each checked: a reward that cannot load, raises, or
returns the wrong number of values or a non-number stops the run with the file and the problem named.
Heavy only through the reward model (torch, transformers, peft), imported when one is asked for."""
from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path
from typing import Callable

from engine.config import RunConfig
from engine.config import rl as rl_config

# What trl passes beside prompts / completions that is not a dataset column.
TRL_KWARGS = ("completion_ids", "trainer_state", "log_extra", "log_metric", "environments")


class RewardError(RuntimeError):
    """A reward cannot be used; the message names the reward (its file) and what to change."""


def text_of(x) -> str:
    """A completion or prompt as text: trl passes conversations (lists of messages) or plain strings."""
    if isinstance(x, str):
        return x
    if isinstance(x, list) and x and isinstance(x[-1], dict):
        return str(x[-1].get("content", ""))
    return str(x)


def _norm(s: str) -> str:
    s = re.sub(r"(?<=\d),(?=\d{3}\b)", "", str(s).strip().casefold())  # 1,000 -> 1000
    s = re.sub(r"\s+", " ", s).strip().strip("\"'`*")
    return s.rstrip(".!").strip()


def final_answer(completion: str) -> str:
    """The answer a completion gives: after its last 'Answer:', else its last non-empty line."""
    found = re.findall(r"answer\s*:\s*(.+)", completion, flags=re.IGNORECASE)
    if found:
        return found[-1]
    lines = [ln for ln in completion.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def exact_match(prompts, completions, answer, **kw) -> list[float]:
    return [float(a is not None and _norm(final_answer(text_of(c))) == _norm(a)) for c, a in zip(completions, answer)]


def contains_answer(prompts, completions, answer, **kw) -> list[float]:
    out = []
    for c, a in zip(completions, answer):
        if a is None or not _norm(a):
            out.append(0.0)
            continue
        ref = re.escape(_norm(a))
        out.append(float(re.search(rf"(?<![\w.]){ref}(?![\w]|\.\d)", _norm(text_of(c))) is not None))
    return out


def format_reward(regex: str) -> Callable:
    pattern = re.compile(regex)

    def format(prompts, completions, **kw) -> list[float]:  # noqa: A001 (the name its metrics carry)
        return [float(pattern.search(text_of(c)) is not None) for c in completions]
    return format


def length_reward(target: int) -> Callable:
    def length(prompts, completions, completion_ids=None, **kw) -> list[float]:
        sizes = [len(ids) for ids in completion_ids] if completion_ids is not None else \
            [len(text_of(c).split()) for c in completions]
        return [max(0.0, 1.0 - abs(n - target) / target) for n in sizes]
    return length


def check_values(values, n: int, who: str) -> list[float]:
    """A reward's output as n floats, or RewardError saying what is wrong with it."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__len__"):
        raise RewardError(f"{who} returned {type(values).__name__}, not a list of {n} numbers (one per completion)")
    values = list(values)
    if len(values) != n:
        raise RewardError(f"{who} returned {len(values)} values for {n} completions; return one number per "
                          "completion, in order")
    out = []
    for i, v in enumerate(values):
        if hasattr(v, "item") and not isinstance(v, (list, tuple)):  # numpy / torch scalars
            try:
                v = v.item()
            except (TypeError, ValueError):
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise RewardError(f"{who} returned {type(v).__name__} {str(v)[:40]!r} at position {i}; every value "
                              "must be a number (int or float)")
        if not math.isfinite(v):
            raise RewardError(f"{who} returned {v} at position {i}; every value must be a finite number")
        out.append(float(v))
    return out


def load_python_reward(path: str) -> Callable:
    """The user's reward(prompts, completions, **columns) from a local .py file, wrapped so that a wrong return
    or an exception names the file. Raises RewardError when the file cannot be imported."""
    err = rl_config.reward_file_problem(path)
    if err:
        raise RewardError(f"method.rl.reward_file: {err}")
    file = rl_config.local_file(path).resolve()
    spec = importlib.util.spec_from_file_location(f"whetstone_reward_{abs(hash(str(file)))}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except BaseException as e:  # a SyntaxError, an ImportError, anything its top level raises
        if isinstance(e, KeyboardInterrupt):
            raise
        raise RewardError(f"method.rl.reward_file: {file} failed to import: {type(e).__name__}: {e}") from e
    fn = getattr(module, "reward", None)
    if fn is None:
        raise RewardError(f"method.rl.reward_file: {file} defines no function `reward`; add "
                          "def reward(prompts, completions, **columns): return [one number per completion]")
    if not callable(fn):
        raise RewardError(f"method.rl.reward_file: {file}: `reward` is a {type(fn).__name__}, not a function")
    who = f"reward() in {file}"

    def python_reward(prompts, completions, **kw) -> list[float]:
        columns = {k: v for k, v in kw.items() if k not in TRL_KWARGS}
        try:
            values = fn([text_of(p) for p in prompts], [text_of(c) for c in completions], **columns)
        except Exception as e:
            raise RewardError(f"{who} raised {type(e).__name__}: {e}") from e
        return check_values(values, len(completions), who)
    return python_reward


def load_reward_model(cfg: RunConfig):
    """(model, tokenizer) of the rm run named in method.rl.reward_model_run: its adapter merged into its base,
    or its full model, in eval mode. Raises RewardError naming the run when it is not a finished rm run."""
    from engine.runs.paths import saves_dir
    value = cfg.method.rl.reward_model_run
    err = rl_config.reward_model_problem(value, saves_dir(cfg.output.saves_dir))
    if err:
        raise RewardError(f"method.rl.reward_model_run: {err}")
    from engine.chat.generate import run_tokenizer
    from engine.modeling import load as models
    from engine.runs.store import run_config, weights_dir
    run = rl_config.run_folder(value, saves_dir(cfg.output.saves_dir))
    rm_cfg = run_config(run)
    wdir = weights_dir(run)
    tok = run_tokenizer(rm_cfg, wdir, run)
    if (wdir / "adapter_config.json").is_file():
        from peft import PeftModel
        base = models.load_model(rm_cfg, models.resolve_path(rm_cfg.model.name_or_path), quantize=False)
        model = PeftModel.from_pretrained(base, str(wdir)).merge_and_unload()
    else:
        model = models.load_model(rm_cfg, str(wdir), quantize=False)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model.eval(), tok


def build(cfg: RunConfig) -> tuple[list[Callable], list[float], list, list[str]]:
    """(reward functions, their weights, their tokenizers for trl (None but for a reward model), their names),
    for the rewards method.rl turns on. Loads the Python file and the reward model now, before training."""
    rl = cfg.method.rl
    funcs, ws, toks, names = [], [], [], []
    for name, weight in rl_config.weights(rl):
        tok = None
        if name == "exact_match":
            fn = exact_match
        elif name == "contains_answer":
            fn = contains_answer
        elif name == "format":
            fn = format_reward(rl.format_regex)
        elif name == "length":
            fn = length_reward(rl.length_target)
        elif name == "reward_model":
            fn, tok = load_reward_model(cfg)
        else:
            fn = load_python_reward(rl.reward_file)
        funcs.append(fn)
        ws.append(float(weight))
        toks.append(tok)
        names.append(name)
    return funcs, ws, toks, names


def score(names: list[str], funcs: list[Callable], weights: list[float], prompts: list, completions: list[str],
          answers: list, completion_ids: list | None = None) -> list[float]:
    """The weighted reward of each completion, as training sums it."""
    total = [0.0] * len(completions)
    for name, fn, w in zip(names, funcs, weights):
        if name == "reward_model":
            raise ValueError("score() does not run reward models")
        vals = fn(prompts=prompts, completions=completions, answer=answers, completion_ids=completion_ids)
        total = [t + w * v for t, v in zip(total, vals)]
    return total


def judge(run_dir: str | Path, rows: list[dict]) -> dict:
    """Mean weighted reward of the greedy replies of the run's base model and of the tuned one to held-out
    prompts ({instruction, output} rows; output = the reference answer), under the run's own rewards (the
    built-in ones and a Python file; not a reward model)."""
    from engine.chat.generate import answer, load_source, model_for
    from engine.config.chat import ChatSource
    from engine.runs.store import run_config
    cfg = run_config(Path(run_dir))
    funcs, ws, _, names = build(cfg)
    loaded = load_source(ChatSource("run", run_dir=str(run_dir)))
    out = {}
    for variant in ("base", "tuned"):
        with model_for(loaded, variant) as model:
            replies = [answer(model, loaded.tok, [{"role": "user", "content": r["instruction"]}],
                              max_new_tokens=cfg.method.rl.max_completion_length, stop_ids=loaded.stop_ids)
                       for r in rows]
        # the tokens each reply took, with its stop token, as the length reward counted them in training
        ids = [loaded.tok(text, add_special_tokens=False)["input_ids"] + [loaded.stop_ids[0]] for text in replies]
        prompts, answers = [r["instruction"] for r in rows], [r["output"] for r in rows]
        scores = score(names, funcs, ws, prompts, replies, answers, ids)
        out[variant] = sum(scores) / len(scores)
        for name, fn in zip(names, funcs):  # each reward's own mean, unweighted
            vals = fn(prompts=prompts, completions=replies, answer=answers, completion_ids=ids)
            out[f"{variant}/{name}"] = sum(vals) / len(vals)
        out[f"{variant}_replies"] = replies
    return out
