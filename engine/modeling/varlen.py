"""Packed rows on torch's own variable-length flash attention, registered as a transformers attention
implementation ("whetstone_varlen"), so packing pays on CUDA without the flash-attn wheel.

Where each sequence starts comes from the position ids (a packed example restarts its positions: a new
sequence begins wherever a position is not the previous one + 1, and at every row start) and, for padded
batches, from the 2-D padding mask (padding tokens are dropped). The kept tokens are gathered into one
(tokens, heads, dim) tensor, `cu_seqlens` marks where each sequence starts, the kernel attends causally
within each sequence only, and the output is scattered back to the batch layout.

What the kernel cannot take (CPU tensors, fp32, a KV cache while generating, dropout, soft-capping,
sliding windows, head dims over 256) runs through SDPA with an explicit mask built from the same
boundaries, so the result never depends on which path ran.

Kernels: torch.nn.attention.varlen.varlen_attn (torch >= 2.10; its signature moved between releases and
is read at run time), or an injected one (`register(kernel=reference_kernel)` runs the same bookkeeping on
CPU with plain SDPA per sequence, which is how it is tested without a GPU). Heavy (torch).
"""
from __future__ import annotations

import functools
import inspect
import math
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F

NAME = "whetstone_varlen"
_override = None  # a kernel forced by register(kernel=...), used on any device and dtype
CALLS = {"kernel": 0, "sdpa": 0}  # which path the attention calls took in this process (benchmarks report it)


@dataclass
class Bounds:
    """The packed layout of a batch: cu_seqlens (int32, n_sequences + 1), the longest sequence, and the
    flat indices (over batch x length) of the tokens kept (None when every token is kept)."""
    cu_seqlens: torch.Tensor
    max_len: int
    keep: torch.Tensor | None


def sequence_starts(position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                    batch: int, length: int, device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(starts, keep_idx): over the kept tokens in row-major order, True where a new sequence begins."""
    device = device if device is not None else (position_ids.device if position_ids is not None else None)
    if position_ids is None:
        pos = torch.arange(length, device=device).expand(batch, length)
    else:
        pos = position_ids.to(device).expand(batch, length)
    pos = pos.reshape(-1)
    row = torch.arange(batch, device=pos.device).repeat_interleave(length)
    idx = None
    if attention_mask is not None and not bool(attention_mask.all()):
        idx = attention_mask.to(pos.device).reshape(-1).bool().nonzero().squeeze(1)
        pos, row = pos[idx], row[idx]
    starts = torch.ones_like(pos, dtype=torch.bool)
    if pos.numel() > 1:
        starts[1:] = (row[1:] != row[:-1]) | (pos[1:] != pos[:-1] + 1)
    return starts, idx


_cache: tuple | None = None  # (weakref to position_ids, weakref to mask, Bounds): one per forward pass


def bounds(position_ids: torch.Tensor | None, attention_mask: torch.Tensor | None, batch: int, length: int,
           device=None) -> Bounds:
    """The packed layout of a batch, computed once per forward pass: every layer receives the same
    position_ids / mask objects, so the second layer on reuses the first one's answer (one host sync)."""
    global _cache
    if _cache is not None and position_ids is not None:
        p, m, b = _cache
        if p() is position_ids and (m() if m is not None else None) is attention_mask:
            return b
    starts, idx = sequence_starts(position_ids, attention_mask, batch, length, device)
    n = starts.numel()
    begin = starts.nonzero().squeeze(1)
    cu = torch.cat([begin, torch.tensor([n], device=begin.device)]).to(torch.int32)
    max_len = int((cu[1:] - cu[:-1]).max()) if n else 0
    b = Bounds(cu, max_len, idx)
    if position_ids is not None:
        _cache = (weakref.ref(position_ids), weakref.ref(attention_mask) if attention_mask is not None else None, b)
    return b


def sequence_ids(position_ids, attention_mask, batch: int, length: int, device=None) -> torch.Tensor:
    """(batch, length) long: which sequence each token belongs to (-1 for padding); for SDPA's mask."""
    starts, idx = sequence_starts(position_ids, attention_mask, batch, length, device)
    ids = starts.long().cumsum(0) - 1
    out = torch.full((batch * length,), -1, dtype=torch.long, device=ids.device)
    if idx is None:
        out = ids
    else:
        out[idx] = ids
    return out.view(batch, length)


# ---------------------------------------------------------------------------------------------
# Kernels: (q, k, v as (tokens, heads, dim), cu_seqlens, max_len, scale) -> (tokens, q_heads, dim), causal
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _torch_varlen():
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None, frozenset()
    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def torch_varlen_available() -> bool:
    """torch ships varlen_attn (2.10 on) and the GPU runs its flash kernel (Ampere or newer)."""
    if not torch.cuda.is_available() or _torch_varlen()[0] is None:
        return False
    return torch.cuda.get_device_capability()[0] >= 8


def _repeat_heads(x: torch.Tensor, n: int) -> torch.Tensor:
    return x if n == 1 else x.repeat_interleave(n, dim=1)


def torch_kernel(q, k, v, cu_seqlens, max_len: int, scale: float | None):
    fn, params = _torch_varlen()
    kw = {}
    if "window_size" in params:  # torch 2.11+: causal is the window (-1, 0)
        kw["window_size"] = (-1, 0)
    else:  # torch 2.10
        kw["is_causal"] = True
    if q.shape[1] != k.shape[1]:
        if "enable_gqa" in params:
            kw["enable_gqa"] = True
        else:  # no grouped-query flag in this torch: give every query head its own copy
            k, v = _repeat_heads(k, q.shape[1] // k.shape[1]), _repeat_heads(v, q.shape[1] // v.shape[1])
    if "scale" in params:
        kw["scale"] = scale
    elif scale is not None:
        q = q * (scale * math.sqrt(q.shape[-1]))
    return fn(q, k, v, cu_seqlens, cu_seqlens, max_len, max_len, **kw)


def reference_kernel(q, k, v, cu_seqlens, max_len: int, scale: float | None):
    """The same arithmetic one sequence at a time with plain causal SDPA: slow, exact, any device."""
    k = _repeat_heads(k, q.shape[1] // k.shape[1])
    v = _repeat_heads(v, q.shape[1] // v.shape[1])
    out = []
    bounds_ = cu_seqlens.tolist()
    for s, e in zip(bounds_[:-1], bounds_[1:]):
        qs, ks, vs = (t[s:e].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        out.append(F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=scale)[0].transpose(0, 1))
    return torch.cat(out) if out else q[:0]


def _kernel_for(query: torch.Tensor):
    if _override is not None:
        return _override
    if query.is_cuda and query.dtype in (torch.float16, torch.bfloat16) and query.shape[-1] <= 256 \
            and torch_varlen_available():
        return torch_kernel
    return None


# ---------------------------------------------------------------------------------------------
# The transformers attention function
# ---------------------------------------------------------------------------------------------

def attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                      is_causal=None, position_ids=None, **kwargs):
    """query (B, Hq, L, D), key / value (B, Hkv, S, D) -> ((B, L, Hq, D), None), as transformers expects."""
    b, hq, lq, d = query.shape
    lk = key.shape[2]
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    kernel = _kernel_for(query)
    plain = (attention_mask is None or attention_mask.dim() == 2) and not kwargs.get("softcap") \
        and kwargs.get("sliding_window") is None and not kwargs.get("output_attentions")
    if kernel is None or lq != lk or not causal or (dropout and module.training) or not plain:
        CALLS["sdpa"] += 1
        return _sdpa(module, query, key, value, attention_mask, dropout, scaling, causal, position_ids, **kwargs)
    CALLS["kernel"] += 1
    bd = bounds(position_ids, attention_mask, b, lq, query.device)
    q = query.transpose(1, 2).reshape(b * lq, hq, d)
    k = key.transpose(1, 2).reshape(b * lk, key.shape[1], d)
    v = value.transpose(1, 2).reshape(b * lk, value.shape[1], d)
    if bd.keep is not None:
        q, k, v = q[bd.keep], k[bd.keep], v[bd.keep]
    out = kernel(q, k, v, bd.cu_seqlens.to(q.device), bd.max_len, scaling)
    if bd.keep is not None:  # padding positions get zeros (their loss is masked)
        out = out.new_zeros(b * lq, hq, d).index_copy(0, bd.keep, out)
    return out.view(b, lq, hq, d), None


def _sdpa(module, query, key, value, attention_mask, dropout, scaling, causal, position_ids, **kwargs):
    """SDPA with the mask the packed layout implies (block-diagonal causal, padding, sliding window)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    b, _, lq, _ = query.shape
    lk = key.shape[2]
    mask = attention_mask
    if mask is None or mask.dim() == 2:
        mask = _mask(position_ids, mask, b, lq, lk, causal, kwargs.get("sliding_window"), query.device)
    kwargs.pop("sliding_window", None)
    return sdpa_attention_forward(module, query, key, value, mask, dropout=dropout, scaling=scaling,
                                  is_causal=causal, **kwargs)


def _mask(position_ids, mask2d, b, lq, lk, causal, window, device):
    """A boolean (B, 1, Lq, Lk) mask (True = attend), or None where plain causal SDPA is exact."""
    i = torch.arange(lq, device=device)[:, None] + (lk - lq)  # query positions among the keys
    j = torch.arange(lk, device=device)[None, :]
    allowed = (j <= i) if causal else torch.ones(lq, lk, dtype=torch.bool, device=device)
    if window:
        allowed = allowed & (j > i - window)
    allowed = allowed[None].expand(b, lq, lk)
    keep = mask2d.to(device).bool()[:, -lk:] if mask2d is not None else None
    if lq == lk:
        seq = sequence_ids(position_ids, keep, b, lq, device)
        packed = bool((seq.max(dim=1).values > 0).any())
        if not packed and keep is None and not window:
            return None  # one sequence per row, no padding: SDPA's own is_causal
        allowed = allowed & (seq[:, :, None] == seq[:, None, :]) & (seq[:, None, :] >= 0)
        eye = torch.eye(lq, dtype=torch.bool, device=device)[None]
        allowed = allowed | (eye & (seq[:, :, None] < 0))  # a padding row attends to itself: no NaN
    elif keep is not None:
        allowed = allowed & keep[:, None, :]
    elif not window and lq == 1:
        return None
    return allowed[:, None]


def register(kernel=None) -> str:
    """Register the attention function (and its mask: the 2-D padding mask or none) with transformers under
    NAME; `kernel` forces one kernel everywhere (tests and the CPU dry run use reference_kernel). Returns
    NAME, for `attn_implementation=` or `model.set_attn_implementation`."""
    global _override
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, flash_attention_mask
    _override = kernel
    AttentionInterface.register(NAME, attention_forward)
    AttentionMaskInterface.register(NAME, flash_attention_mask)
    return NAME
