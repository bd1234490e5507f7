"""General rows mixed into an SFT run so the model keeps what it knew (the run config's retain section).

replay: prompts of retain.dataset answered greedily by the base model itself, before any adapter is
applied; training on its own answers holds its general behaviour in place while the adapter learns the
user's rows (answers cached per model: engine.evaluate.drift.base_answers). mix: retain.dataset's rows
with their written answers. Either way share x (your rows) of them, drawn with the run's seed. Heavy.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine import config as C
from engine.data import held_out
from engine.data.encode import IGNORE
from engine.preflight.schedule import general_rows


@dataclass
class Plan:
    """What retain will add: how many rows, and from which prompts (replay) or examples (mix)."""
    n: int = 0
    prompts: list[list[dict]] = field(default_factory=list)   # replay
    examples: list[dict] = field(default_factory=list)        # mix, tokenised
    source: str = ""


def plan(cfg: C.RunConfig, tokenizer, task_rows: int) -> Plan:
    """Read retain.dataset and draw the rows (replay answers come later, from the loaded base model)."""
    r = cfg.retain
    if not general_rows(cfg, task_rows, 1 << 30):
        return Plan()
    rng = random.Random(cfg.train.seed)
    if r.method == "replay":  # one shuffled order, cut to size: runs of any size share the cached answers
        prompts = [p for p, _ in held_out.questions(r.dataset)]
        rng.shuffle(prompts)
        n = general_rows(cfg, task_rows, len(prompts))
        return Plan(n, prompts[:n], source=r.dataset)
    from engine.data import pipeline
    only = C.replace(C.replace(C.replace(cfg, "data.datasets", [r.dataset]), "data.eval_datasets", []),
                     "data.val_size", 0.0)
    rows, _, _ = pipeline.build(only, tokenizer)
    n = general_rows(cfg, task_rows, len(rows))
    return Plan(n, examples=rng.sample(rows, n), source=r.dataset)


def examples(p: Plan, cfg: C.RunConfig, base_model, tokenizer, model_id: str) -> list[dict]:
    """The plan's rows as training examples: for replay, the base model's answers (call before the method is
    applied, so base_model is the untouched base). Only the answer tokens are trained; an answer cut at
    retain.max_new_tokens gets no end-of-turn token, so the model is not taught to stop mid-sentence."""
    if p.examples or not p.prompts:
        return list(p.examples)
    from engine.evaluate.drift import base_answers
    base_model.eval()
    answers = base_answers(base_model, tokenizer, p.prompts, cfg.retain.max_new_tokens, model_id)
    out = []
    for conv, ans in zip(p.prompts, answers):
        prompt = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                               return_dict=True)["input_ids"]
        ids = (list(prompt) + list(ans))[: cfg.data.cutoff_len]
        labels = ([IGNORE] * len(prompt) + list(ans))[: cfg.data.cutoff_len]
        if any(t != IGNORE for t in labels):
            out.append({"input_ids": ids, "labels": labels})
    return out


def describe(p: Plan, cfg: C.RunConfig) -> str:
    if not p.n:
        return "retain: none"
    what = "the base model's own answers to prompts of" if cfg.retain.method == "replay" else "rows of"
    return f"retain: {p.n} general rows mixed in ({what} {p.source})"

