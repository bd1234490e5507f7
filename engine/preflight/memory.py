"""Before Train: how many parameters train, and roughly how much GPU memory the run will peak at,
compared with the GPU this machine has, with the one change that makes it fit when it will not.

Light (stdlib only): it works from engine.preflight.shape (config.json + safetensors headers).
The estimate is a sum of plain terms, each shown to the user:
  weights      every base weight at its stored precision (4-bit: 0.5 byte + block constants)
  adapters     the trainable adapter weights (fp32)
  gradients    one per trainable weight
  optimizer    AdamW: 2 states per trainable weight (fp32, or 1 byte each for 8-bit AdamW)
  activations  what the backward pass keeps for batch x cutoff tokens (every row assumed full length);
               with gradient checkpointing only each layer's input plus one layer's worth
  logits       batch x cutoff x vocab: bf16 logits, their fp32 copy for the loss and its gradient
               (an upper bound: with train.trained_logits_only only trained positions get logits); where
               Liger fuses the head into the loss (a GPU, liger-kernel installed, see fused_head) only a
               chunk of logits exists at a time: ~12 bytes per token per hidden unit
  overhead     CUDA context, cuBLAS workspace and allocator slack (a fixed 0.5 GiB)
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import lru_cache

from engine import config as C
from engine.config.method import MERGES_AWAY, PAIR_STAGES
from engine.config.rl import RL_STAGES
from engine.preflight import shape as model_shape
from engine.preflight.shape import FFN_OUT_NAMES, ModelShape

GIB = 2 ** 30
# Where Liger's fused head is exact (logits are exactly head(hidden)) and possible (the head's weight whole on
# one GPU); engine.modeling.liger applies it by these same lists.
PLAIN_HEAD_TYPES = frozenset({"llama", "mistral", "qwen2", "qwen3", "smollm3", "olmo2"})
SHARDED_WEIGHTS = ("fsdp", "deepspeed_zero3")
OVERHEAD_GIB = 0.5
FIT_SHARE = 0.95  # leave 5% of the card free
METHODS = ("lora", "qlora", "adalora", "ia3", "prefix", "prompt", "ptuning", "bottleneck", "freeze", "full")
LATENCY = {"prefix": "adds virtual tokens to every sequence's attention", "prompt": "adds virtual tokens",
           "ptuning": "adds virtual tokens", "bottleneck": "adds adapter layers (cannot merge)"}


@dataclass
class Estimate:
    total_params: int
    trainable_params: int
    parts_gib: dict[str, float] = field(default_factory=dict)
    gpu_gib: float | None = None
    suggestion: str = ""  # the one change that makes it fit ("" when it fits or nothing helps)
    suggested_config: C.RunConfig | None = None  # the config with that change made

    @property
    def trainable_pct(self) -> float:
        return 100.0 * self.trainable_params / max(self.total_params, 1)

    @property
    def peak_gib(self) -> float:
        return round(sum(self.parts_gib.values()), 2)

    @property
    def fits(self) -> bool | None:
        return None if self.gpu_gib is None else self.peak_gib <= FIT_SHARE * self.gpu_gib

    def warning(self) -> str:
        if self.gpu_gib is None:
            return "No CUDA GPU found on this machine: the estimate is for a GPU in bf16."
        if self.fits:
            return ""
        fix = f" To fit: {self.suggestion}." if self.suggestion else " No single setting change makes it fit: " \
                                                                     "pick a smaller model."
        return f"This run needs about {self.peak_gib:.1f} GiB but the GPU has {self.gpu_gib:.1f} GiB.{fix}"


def trainable_params(shape: ModelShape, cfg: C.RunConfig, finetuning: str | None = None) -> int:
    """Trainable parameters of a method on this model, counted the way peft counts them."""
    m = cfg.method
    ft = finetuning or m.finetuning
    h = shape.hidden
    head = h if m.stage == "rm" else 0  # the reward model's score head trains too

    def targeted(targets) -> list[tuple[int, int]]:
        names = shape.linear_names if targets == "all" else targets
        return [io for n in names for io in shape.linears.get(n, [])]

    if ft in ("lora", "qlora"):
        per = [m.lora.rank * (i + o) + (o if m.lora.use_dora else 0) for i, o in targeted(m.lora.targets)]
        return sum(per) + head
    if ft == "adalora":
        return sum(m.adalora.init_rank * (i + o + 1) for i, o in targeted(m.lora.targets)) + head
    if ft == "ia3":
        names = ["k_proj", "v_proj", "down_proj"] if m.ia3.targets == "all" else m.ia3.targets
        return sum(i if n in FFN_OUT_NAMES else o for n in names for i, o in shape.linears.get(n, [])) + head
    n = m.prompt.num_virtual_tokens
    if ft == "prefix":
        return n * shape.layers * 2 * shape.kv_dim
    if ft == "prompt":
        return n * h
    if ft == "ptuning":
        e = m.prompt.encoder_hidden_size
        return n * h + (h * e + e) + (e * e + e) + (e * h + h)
    if ft == "bottleneck":
        per = 2 * h * m.bottleneck.size + m.bottleneck.size + h
        return per * shape.layers * (2 if m.bottleneck.placement == "both" else 1)
    if ft == "freeze":
        fz, chosen = m.freeze, {}
        for i in sorted(shape.layer_tensors)[-fz.trainable_layers:]:
            for name, k in shape.layer_tensors[i].items():
                if not fz.trainable_modules or any(t in name.split(f".{i}.", 1)[-1] for t in fz.trainable_modules):
                    chosen[name] = k
        everything = {**shape.other_tensors, **{n: k for t in shape.layer_tensors.values() for n, k in t.items()}}
        chosen.update({n: k for n, k in everything.items() if any(e in n for e in fz.extra_modules)})
        return sum(chosen.values()) + head
    return shape.total_params + head


def params_table(shape: ModelShape, cfg: C.RunConfig) -> list[dict]:
    """One row per method for the Method tab: trainable parameters, share and inference cost."""
    rows = []
    for ft in METHODS:
        n = trainable_params(shape, cfg, ft)
        rows.append({"method": ft, "trainable_params": n, "trainable_pct": round(100.0 * n / shape.total_params, 4),
                     "inference_latency": "none (merges into the weights)" if ft in MERGES_AWAY else LATENCY[ft]})
    return rows


def _weight_bytes(shape: ModelShape, cfg: C.RunConfig, dtype_bytes: float) -> float:
    q = C.quantization(cfg)
    lin = shape.layer_linear_params
    rest = shape.total_params - lin
    if q == "4bit":
        consts = (1 / 64 + 4 / (64 * 256)) if cfg.method.quant.double_quant else 4 / 64
        return lin * (0.5 + consts) + rest * dtype_bytes
    if q == "8bit":
        return lin * (1 + 4 / 4096) + rest * dtype_bytes
    return shape.total_params * dtype_bytes


def estimate(shape: ModelShape, cfg: C.RunConfig, gpu_gib: float | None = None, dtype_bytes: float | None = None,
             suggest: bool = True) -> Estimate:
    """The estimated peak GPU memory of a run (see the module docstring for the terms)."""
    m, t = cfg.method, cfg.train
    ft = m.finetuning
    if dtype_bytes is None:
        dtype_bytes = {"fp32": 4, "bf16": 2, "fp16": 2, "auto": 2}[cfg.model.dtype]
    trainable = trainable_params(shape, cfg)
    in_model = ft in ("full", "freeze")  # trained in place at model precision; adapters are fp32
    p_bytes = dtype_bytes if in_model else 4
    opt_bytes = {"adamw": 2 * p_bytes, "paged_adamw": 2 * p_bytes, "adamw_8bit": 2, "paged_adamw_8bit": 2,
                 "adafactor": 0.1 * p_bytes, "sgd": 0}[t.optimizer]
    seqs = t.batch_size * (2 if m.stage in PAIR_STAGES else 1)
    tokens = seqs * (cfg.data.cutoff_len + (m.prompt.num_virtual_tokens if ft in ("prefix", "prompt", "ptuning")
                                            else 0))
    if m.stage in RL_STAGES:  # each sequence: a prompt (up to cutoff_len) and a sampled completion
        tokens = seqs * (cfg.data.cutoff_len + m.rl.max_completion_length)
    h, kv, inter = shape.hidden, shape.kv_dim, shape.intermediate
    a = 2 if dtype_bytes <= 2 else 4
    per_layer_token = a / 2 * (18 * h + 6 * kv + 8 * inter)
    if ft in ("lora", "qlora", "adalora"):
        per_layer_token += 4 * m.lora.rank * len(shape.linears)
    if ft == "bottleneck":
        per_layer_token += 4 * 2 * m.bottleneck.size
    if t.gradient_checkpointing:
        acts = tokens * (shape.layers * h * a + per_layer_token)
    else:
        acts = tokens * shape.layers * per_layer_token
    logits = tokens * shape.vocab * (a + 4 + 4) if m.stage != "rm" else tokens * h * a
    if fused_head(shape, cfg, gpu_gib):
        logits = tokens * h * 12  # Liger's chunks (chunk tokens ~ tokens x hidden / vocab) and the input gradient
    weights = _weight_bytes(shape, cfg, dtype_bytes)
    frozen_reference = m.stage in ("dpo", "kto") or (m.stage in RL_STAGES and m.rl.beta > 0)
    if frozen_reference and ft in ("full", "freeze", "bottleneck"):
        weights *= 2  # a frozen reference copy of the model
    parts = {"weights": weights, "adapters": 0 if in_model else trainable * 4, "gradients": trainable * p_bytes,
             "optimizer": trainable * opt_bytes, "activations": acts, "logits": logits}
    est = Estimate(shape.total_params, trainable, {k: round(v / GIB, 3) for k, v in parts.items()}, gpu_gib)
    est.parts_gib["overhead"] = OVERHEAD_GIB
    if suggest and est.fits is False:
        est.suggestion, est.suggested_config = one_fix(shape, cfg, gpu_gib, dtype_bytes)
    return est


def fused_head(shape: ModelShape, cfg: C.RunConfig, gpu_gib: float | None) -> bool:
    """Will the worker fuse the output head into the loss (engine.modeling.liger.fuse_head)? On a GPU with
    liger-kernel installed, trained-positions-only logits, sft / pt, a plain head and whole weights."""
    t = cfg.train
    return bool(gpu_gib and t.trained_logits_only and t.liger_kernels and cfg.method.stage in ("sft", "pt")
                and shape.model_type in PLAIN_HEAD_TYPES and cfg.distributed.strategy not in SHARDED_WEIGHTS
                and importlib.util.find_spec("liger_kernel") is not None)


def _fits(shape, cfg, gpu_gib, dtype_bytes) -> bool:
    return bool(estimate(shape, cfg, gpu_gib, dtype_bytes, suggest=False).fits)


def one_fix(shape: ModelShape, cfg: C.RunConfig, gpu_gib: float,
            dtype_bytes: float | None = None) -> tuple[str, C.RunConfig | None]:
    """The least disruptive single change that makes the estimate fit: (words, changed config), or
    ("", None) when no single change does. Tried in order: gradient checkpointing, a smaller batch with
    more accumulation, 8-bit AdamW, LoRA instead of full / freeze, 4-bit base weights, shorter rows."""
    t, m = cfg.train, cfg.method
    tries: list[tuple[str, C.RunConfig]] = []
    if not t.gradient_checkpointing:
        tries.append(("turn on train.gradient_checkpointing", C.replace(cfg, "train.gradient_checkpointing", True)))
    bs = t.batch_size
    while bs > 1:
        bs //= 2
        accum = t.grad_accum * (t.batch_size // bs)
        c = C.replace(C.replace(cfg, "train.batch_size", bs), "train.grad_accum", accum)
        tries.append((f"lower train.batch_size {t.batch_size} -> {bs} and raise train.grad_accum "
                      f"{t.grad_accum} -> {accum} (same effective batch)", c))
    if t.optimizer in ("adamw", "paged_adamw"):
        tries.append(("set train.optimizer to adamw_8bit", C.replace(cfg, "train.optimizer", "adamw_8bit")))
    if m.finetuning in ("full", "freeze"):
        tries.append(("use method.finetuning lora", C.replace(cfg, "method.finetuning", "lora")))
    if m.finetuning in ("lora", "full", "freeze") and m.lora.init != "pissa":
        tries.append(("use method.finetuning qlora (4-bit base weights)", C.replace(cfg, "method.finetuning", "qlora")))
    n = cfg.data.cutoff_len
    while n > 256:
        n //= 2
        tries.append((f"lower data.cutoff_len {cfg.data.cutoff_len} -> {n}", C.replace(cfg, "data.cutoff_len", n)))
    for words, c in tries:
        if _fits(shape, c, gpu_gib, dtype_bytes):
            return words, c
    return "", None


@lru_cache(maxsize=1)
def gpu_total_gib() -> float | None:
    """Memory of the first CUDA GPU from nvidia-smi (no torch in the UI process), or None."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=5, check=True).stdout
        return round(float(out.splitlines()[0].strip()) / 1024, 2)
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return None


def for_config(cfg: C.RunConfig) -> Estimate | None:
    """The estimate for a config against this machine's GPU (None when the model is not on disk yet)."""
    shape = model_shape.of(cfg.model.name_or_path)
    return None if shape is None else estimate(shape, cfg, gpu_total_gib())


def summary(est: Estimate) -> str:
    """Plain words for the Method / Hyperparameters tabs."""
    parts = ", ".join(f"{k} {v:.2f}" for k, v in est.parts_gib.items() if v)
    gpu = f" of {est.gpu_gib:.1f} GiB" if est.gpu_gib else ""
    text = (f"{est.total_params / 1e6:,.1f}M parameters, {est.trainable_params / 1e6:,.3f}M trainable "
            f"({est.trainable_pct:.3f}%). Estimated peak GPU memory {est.peak_gib:.2f} GiB{gpu} ({parts} GiB).")
    w = est.warning()
    return text + ("\n" + w if w else "")


