"""Drift: how far a tuned model's general behaviour moved from its base's, as one ratio.

For a set of general prompts, the base model's own greedy answers are the reference (its behaviour, not
a hand-written ideal: a loss on short written answers falls when a model learns to answer briefly, which
hides the change). The drift ratio is the tuned model's mean token loss on those answers divided by the
base's: 1.0 = unchanged, 1.27 = each answer token is e^(0.27 x base loss) times less likely.

Base answers depend only on the base model, its chat template, the prompts and the length, so they are
generated once and cached (cache_dir()/base_answers). Replay (engine.train.retain) uses the same cache.
Heavy (torch).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from engine.data.encode import IGNORE
from engine.runs.atomic import write_text
from engine.runs.paths import REPO, cache_dir

GENERAL_PROMPTS = REPO / "data" / "reference" / "general_prompts.json"


def general_prompts(path: Path = GENERAL_PROMPTS) -> list[str]:
    return [r["prompt"] for r in json.loads(path.read_text(encoding="utf-8"))]


def _digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:32]


def base_answers(base, tok, conversations: list[list[dict]], max_new_tokens: int, model_id: str,
                 stop_ids: list[int] | None = None) -> list[list[int]]:
    """The base model's greedy answer (token ids, stop token included when it stopped) to each conversation.
    Cached per conversation in one file per model id (its resolved path), chat template and length, so runs
    that share prompts (replay draws from one shuffled list) generate each answer once."""
    from engine.chat.generate import answer_batch
    path = cache_dir() / "base_answers" / f"{_digest([model_id, tok.chat_template or '', max_new_tokens])}.json"
    try:
        cached = json.loads(path.read_text())
        cached = cached if isinstance(cached, dict) else {}
    except (OSError, ValueError):
        cached = {}
    keys = [_digest(c) for c in conversations]
    missing = [i for i, k in enumerate(keys) if k not in cached]
    if missing:
        new = answer_batch(base, tok, [conversations[i] for i in missing], max_new_tokens, stop_ids, batch_size=32)
        cached.update({keys[i]: ids for i, (_, ids) in zip(missing, new)})
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, json.dumps(cached))
        except OSError:
            pass  # a read-only cache costs time, not correctness
    return [cached[k] for k in keys]


@torch.no_grad()
def answer_loss(model, tok, conversations: list[list[dict]], answers: list[list[int]], batch_size: int = 8
                ) -> tuple[float, int]:
    """(summed token loss, tokens) of `answers` after their prompts, under `model`."""
    total, count = 0.0, 0
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    rows = []
    for conv, ans in zip(conversations, answers):
        prompt = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
        rows.append((list(prompt) + list(ans), [IGNORE] * len(prompt) + list(ans)))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        width = max(len(i) for i, _ in chunk)
        ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in chunk], device=model.device)
        labels = torch.tensor([lab + [IGNORE] * (width - len(lab)) for _, lab in chunk], device=model.device)
        mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in chunk], device=model.device)
        logits = model(input_ids=ids, attention_mask=mask).logits[:, :-1].float()
        target = labels[:, 1:]
        total += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                                         ignore_index=IGNORE, reduction="sum"))
        count += int((target != IGNORE).sum())
    return total, count


def measure(tuned, base_view, tok, model_id: str, prompts: list[str], max_new_tokens: int = 96,
            stop_ids: list[int] | None = None) -> dict:
    """The drift ratio and its parts. base_view: a context manager yielding the base model (for an adapter,
    the same weights with the adapter switched off)."""
    convs = [[{"role": "user", "content": p}] for p in prompts]
    with base_view as base:
        answers = base_answers(base, tok, convs, max_new_tokens, model_id, stop_ids)
        base_sum, n = answer_loss(base, tok, convs, answers)
    tuned_sum, _ = answer_loss(tuned, tok, convs, answers)
    base_loss, tuned_loss = base_sum / max(n, 1), tuned_sum / max(n, 1)
    return {"drift_ratio": round(tuned_loss / base_loss, 4) if base_loss > 0 else None,
            "drift_loss_tuned": round(tuned_loss, 4), "drift_loss_base": round(base_loss, 4),
            "drift_prompts": len(prompts), "drift_tokens": n}
