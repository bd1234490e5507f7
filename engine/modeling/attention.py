"""Which attention kernel a model loads with: a variable-length kernel on CUDA where packed rows pay
(flash-attn's when that package is installed, else torch's own varlen flash attention, registered by
engine.modeling.varlen), plain SDPA elsewhere. Heavy (torch)."""
from __future__ import annotations

import importlib.util

import torch

FLASH_ATTN = "flash_attention_2"


def packed_kernel(dtype: torch.dtype | None = None) -> str | None:
    """The attn_implementation packed rows run on here, or None (plain SDPA: packing does not pay).
    Both variable-length kernels take fp16 / bf16 only; dtype None means the GPU's default (bf16)."""
    if not torch.cuda.is_available():
        return None
    if dtype is not None and dtype not in (torch.float16, torch.bfloat16):
        return None
    if importlib.util.find_spec("flash_attn") is not None:
        return FLASH_ATTN
    from engine.modeling import varlen
    if varlen.torch_varlen_available():
        return varlen.register()
    return None


def varlen_attention(dtype: torch.dtype | None = None) -> bool:
    """True where packed rows run on a variable-length attention kernel (CUDA: flash-attn or torch's own)."""
    return packed_kernel(dtype) is not None
