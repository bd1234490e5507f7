"""Causal-LM loss over the trained positions only.

With `logits_to_keep` (a boolean mask from engine.train.collate) the model projects only the hidden
states whose next token is trained: the prompt's and the padding's full-vocabulary logits are never
materialised. This loss pairs those logits with their targets. It is the same sum over trained
tokens as the standard shifted cross-entropy, divided by the same token count.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.data.encode import IGNORE


def trained_positions_loss(outputs, labels: torch.Tensor, num_items_in_batch=None) -> torch.Tensor:
    logits = outputs["logits"] if isinstance(outputs, dict) else outputs.logits
    shifted = torch.full_like(labels, IGNORE)
    shifted[:, :-1] = labels[:, 1:]
    targets = shifted[shifted != IGNORE]
    logits = logits.reshape(-1, logits.shape[-1])
    if logits.shape[0] != targets.shape[0]:
        # The model ignored logits_to_keep (an architecture without it): fall back to the full shift.
        logits = logits.reshape(labels.shape[0], labels.shape[1], -1)[shifted != IGNORE]
    loss = F.cross_entropy(logits.float(), targets, reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else targets.numel()
    if torch.is_tensor(denom):
        denom = denom.to(loss.device)
    return loss / denom
