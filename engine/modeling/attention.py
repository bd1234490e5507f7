"""Which attention kernel a model loads with: a variable-length kernel (flash-attention on CUDA) where
packed rows pay, plain SDPA elsewhere. Heavy (torch)."""
from __future__ import annotations

import importlib.util

import torch


def varlen_attention() -> bool:
    """True where packed rows run on a variable-length attention kernel (flash-attention on CUDA)."""
    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
