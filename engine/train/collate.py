"""Collators: how examples become a batch, padded or packed.

- padded: rows padded to the longest in the batch, with an attention mask (the classic way).
- packed: the batch's rows joined into one row with no padding at all; position ids restart at 0
  for every example, and transformers builds a block-diagonal mask from them (masking_utils'
  packed-sequence detection), so no example attends to another. The first label of each example is
  masked so no token is trained to predict across a boundary. Loss equals the padded batch's.

Both can also emit `logits_to_keep`: the positions (one index list for every row: the union over the rows)
whose next token is trained, so the model projects only those hidden states onto the vocabulary (see
engine.train.loss). A 1-D index is what every transformers 5.x takes (a boolean mask only from ~5.2x on);
for a packed batch, one row, the union is exact. Heavy (torch).
"""
from __future__ import annotations

import torch

from engine.data.encode import IGNORE
from engine.modeling.attention import varlen_attention


def use_packing(setting: str, dtype=None) -> bool:
    """train.packing: 'on' / 'off', or 'auto' = only where a variable-length kernel makes it pay (CUDA, fp16 /
    bf16 weights: flash-attn or torch's own varlen attention). With plain SDPA a packed row of N tokens
    attends over N x N (masked) instead of the rows' own squares: measured on the 2-core CPU, 135M shape,
    batch 4, rows up to 256 tokens: 0.82x the padded step."""
    if isinstance(setting, bool):
        return setting
    return setting == "on" or (setting == "auto" and varlen_attention(dtype))


def _keep_positions(labels: torch.Tensor) -> torch.Tensor:
    """Position p is needed iff labels[:, p + 1] is trained in some row (the model predicts the next token)."""
    keep = torch.zeros_like(labels, dtype=torch.bool)
    keep[:, :-1] = labels[:, 1:] != IGNORE
    return keep.any(0).nonzero().squeeze(1)


def padded(pad_id: int, trained_logits_only: bool = False):
    def collate(batch: list[dict]) -> dict:
        width = max(len(r["input_ids"]) for r in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            n = len(r["input_ids"])
            ids[i, :n] = torch.tensor(r["input_ids"])
            labels[i, :n] = torch.tensor(r["labels"])
            mask[i, :n] = 1
        out = {"input_ids": ids, "labels": labels, "attention_mask": mask}
        if trained_logits_only:
            out["logits_to_keep"] = _keep_positions(labels)
        return out

    collate.packed = False
    return collate


def packed(trained_logits_only: bool = False):
    def collate(batch: list[dict]) -> dict:
        ids, labels, pos = [], [], []
        for r in batch:
            n = len(r["input_ids"])
            ids += r["input_ids"]
            labels += [IGNORE] + list(r["labels"][1:])
            pos += range(n)
        # use_cache=False: transformers only looks for packed sequences when no KV cache is being built.
        out = {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]),
               "position_ids": torch.tensor([pos]), "use_cache": False}
        if trained_logits_only:
            out["logits_to_keep"] = _keep_positions(out["labels"])
        return out

    collate.packed = True
    return collate
