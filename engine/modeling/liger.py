"""Liger kernels: fused Triton RMSNorm, RoPE and SwiGLU, and the output head's matrix product fused with
the cross-entropy, on a CUDA GPU when the liger-kernel package is installed and train.liger_kernels is on.

The fused head composes with trained-positions-only logits (engine.train.loss): the model gathers the
hidden states of the trained positions as usual, the head passes them through instead of projecting them,
and engine.train.loss.FusedHeadLoss multiplies them by the head's weight chunk by chunk inside Liger's
fused linear cross-entropy, so not even the trained positions' (tokens x vocabulary) logits exist whole.
Only where the logits are exactly head(hidden) (no soft-capping or scaling after the head) and the head's
weight is whole on this GPU (no FSDP / ZeRO-3 shards). Heavy (torch; liger_kernel when present).
"""
from __future__ import annotations

import importlib.util

import torch
from torch import nn

from engine.preflight.memory import PLAIN_HEAD_TYPES, SHARDED_WEIGHTS  # the estimate follows the same rule


def available() -> bool:
    return torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None


def apply(model: nn.Module, cfg) -> list[str]:
    """Patch the loaded model (before adapters are added) with Liger's RMSNorm, RoPE and SwiGLU kernels
    where its architecture has them; returns the kernels applied ([] when none)."""
    if not getattr(cfg.train, "liger_kernels", False) or not available():
        return []
    if cfg.distributed.strategy in SHARDED_WEIGHTS:
        return []  # the Triton kernels take plain tensors, not FSDP / ZeRO-3 shards
    from liger_kernel.transformers import _apply_liger_kernel_to_instance
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN
    if getattr(model.config, "model_type", None) not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        return []
    _apply_liger_kernel_to_instance(model=model, rope=True, rms_norm=True, swiglu=True, cross_entropy=False,
                                    fused_linear_cross_entropy=False)
    return ["rms_norm", "rope", "swiglu"]


def _pass_hidden_states(hidden_states: torch.Tensor) -> torch.Tensor:
    return hidden_states


def fuse_head(model: nn.Module, cfg) -> nn.Linear | None:
    """Make the output head pass the (trained positions') hidden states through, for FusedHeadLoss; returns
    the head (its weight is what the loss multiplies by), or None where fusing would not be exact."""
    if not (cfg.train.trained_logits_only and getattr(cfg.train, "liger_kernels", False) and available()):
        return None
    if cfg.distributed.strategy in SHARDED_WEIGHTS or cfg.method.stage not in ("sft", "pt"):
        return None
    config, get_head = getattr(model, "config", None), getattr(model, "get_output_embeddings", None)
    if getattr(config, "model_type", None) not in PLAIN_HEAD_TYPES or get_head is None:
        return None
    head = get_head()
    if type(head) is not nn.Linear:  # a peft wrapper, a quantised head: leave it alone
        return None
    head.forward = _pass_hidden_states  # instance attribute: the weights and the state dict are untouched
    return head
