"""Causal-LM loss over the trained positions only.

With `logits_to_keep` (the trained positions, from engine.train.collate) the model projects only the hidden
states whose next token is trained: the prompt's and the padding's full-vocabulary logits are never
materialised. This loss pairs those logits with their targets. It is the same sum over trained
tokens as the standard shifted cross-entropy, divided by the same token count. With Liger on CUDA,
FusedHeadLoss fuses the output head into the loss as well (engine.modeling.liger).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data.encode import IGNORE


def _shifted(labels: torch.Tensor) -> torch.Tensor:
    shifted = torch.full_like(labels, IGNORE)
    shifted[:, :-1] = labels[:, 1:]
    return shifted


def _per_token(total: torch.Tensor, targets: torch.Tensor, num_items_in_batch) -> torch.Tensor:
    denom = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    if torch.is_tensor(denom):
        denom = denom.to(total.device)
    return total / denom


def _targets(labels: torch.Tensor, kept: int) -> torch.Tensor:
    """The next-token targets at the positions the model kept (engine.train.collate's union of trained
    positions; all positions when the model ignored logits_to_keep), shape (rows, kept)."""
    shifted = _shifted(labels)
    if kept == labels.shape[1]:
        return shifted
    return shifted[:, (shifted != IGNORE).any(0).nonzero().squeeze(1)]


def trained_positions_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    targets = _targets(labels, logits.shape[-2]).reshape(-1)
    trained = targets != IGNORE
    logits = logits.reshape(-1, logits.shape[-1])[trained]  # a padded batch's union holds untrained positions
    loss = F.cross_entropy(logits.float(), targets[trained], reduction="sum")
    return _per_token(loss, targets[trained], num_items_in_batch)


class FusedHeadLoss:
    """The same loss from the trained positions' hidden states: the output head (engine.modeling.liger.fuse_head
    made it pass them through) is multiplied in chunk by chunk inside Liger's fused linear cross-entropy,
    so the (tokens x vocabulary) logits never exist whole. Same sum over trained tokens, same divisor."""

    def __init__(self, head: torch.nn.Linear):
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss
        self.head = head
        self.fused = LigerFusedLinearCrossEntropyLoss(ignore_index=IGNORE, reduction="sum")

    def __call__(self, outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
        hidden = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
        targets = _targets(labels, hidden.shape[-2]).reshape(-1)
        trained = targets != IGNORE
        hidden = hidden.reshape(-1, hidden.shape[-1])[trained]
        weight, bias = self.head.weight, self.head.bias
        if weight.dtype != hidden.dtype:
            weight = weight.to(hidden.dtype)
            bias = bias.to(hidden.dtype) if bias is not None else None
        return _per_token(self.fused(weight, hidden, targets[trained], bias), targets[trained], num_items_in_batch)
