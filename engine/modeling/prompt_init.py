"""Starting a prefix from real words (prefix tuning's "initialise from vocabulary"): the keys and values
the frozen model itself computes for a text, at every layer, become the prefix's starting values; and,
for a reparameterised prefix (an MLP or LSTM in front), the encoder's last linear layer is solved so that
its first output is exactly that prefix. Used by peft's prefix tuning and by P-Tuning v2
(engine.modeling.deep_prompts). Heavy (torch).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from engine.modeling.layers import MethodError


def text_ids(tokenizer, text: str, n: int) -> list[int]:
    """The text's tokens repeated or cut to n (peft's rule for prompt tuning's text init)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not ids:
        raise MethodError(f"method.prompt.init_text: {text!r} has no tokens; write some words or leave it empty")
    return (ids * math.ceil(n / len(ids)))[:n]


@torch.no_grad()
def cache_kv(model: nn.Module, **inputs) -> torch.Tensor:
    """(layers, 2, kv_heads, n, head_dim) fp32: the keys (after the rotary embedding, at positions 0..n-1)
    and values of every layer for one sequence of n tokens (input_ids or inputs_embeds, batch of one),
    as the model's own cache holds them."""
    was_training = model.training
    model.eval()
    try:
        out = model(**inputs, use_cache=True)
    finally:
        model.train(was_training)
    cache = out.cache if getattr(out, "cache", None) is not None else out.past_key_values
    return torch.stack([torch.stack([layer.keys[0], layer.values[0]]) for layer in cache.layers]).float()


def text_kv(model: nn.Module, tokenizer, text: str, n: int) -> torch.Tensor:
    """cache_kv of the text's tokens, repeated or cut to n."""
    ids = torch.tensor([text_ids(tokenizer, text, n)], device=next(model.parameters()).device)
    return cache_kv(model, input_ids=ids)


def flat(kv: torch.Tensor) -> torch.Tensor:
    """(layers, 2, heads, n, dim) -> (n, layers * 2 * heads * dim): one row per virtual token, layer by
    layer, key before value: the layout of peft's prefix encoder and of deep_prompts.PromptEncoder."""
    return kv.permute(3, 0, 1, 2, 4).reshape(kv.shape[3], -1)


@torch.no_grad()
def fit_last_linear(features: torch.Tensor, last: nn.Linear, target: torch.Tensor) -> float:
    """Solve the last linear layer of an encoder so that features (n x in) map to target (n x out):
    least squares with the bias as one more column (exact when n <= in + 1 and the features are
    independent, as a random encoder's are). Returns the largest remaining |difference|."""
    x = torch.cat([features.float(), torch.ones(features.shape[0], 1, device=features.device)], dim=1)
    sol = torch.linalg.lstsq(x.cpu().double(), target.cpu().double(), driver="gelsd").solution
    last.weight.copy_(sol[:-1].T.to(last.weight.dtype))
    last.bias.copy_(sol[-1].to(last.bias.dtype))
    return float((last(features.to(last.weight.dtype)) - target.to(last.weight.dtype)).abs().max())
