"""Optimizer choice: train.optimizer -> the Hugging Face Trainer's `optim` name, and LoRA+ (a custom
optimizer whose B matrices get a higher learning rate). Heavy (LoRA+ builds the optimizer)."""
from __future__ import annotations

from engine.config import RunConfig

# train.optimizer -> transformers' OptimizerNames value.
HF_OPTIM = {"adamw": "adamw_torch", "adamw_8bit": "adamw_bnb_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
            "paged_adamw": "paged_adamw_32bit", "adafactor": "adafactor", "sgd": "sgd"}


def hf_optim(cfg: RunConfig) -> str:
    return HF_OPTIM[cfg.train.optimizer]


def _optimizer_cls(name: str):
    import torch
    if name == "adamw":
        return torch.optim.AdamW, {}
    if name == "sgd":
        return torch.optim.SGD, {}
    if name == "adafactor":
        from transformers.optimization import Adafactor
        return Adafactor, {"scale_parameter": False, "relative_step": False}
    import bitsandbytes as bnb
    return {"adamw_8bit": bnb.optim.AdamW8bit, "paged_adamw_8bit": bnb.optim.PagedAdamW8bit,
            "paged_adamw": bnb.optim.PagedAdamW}[name], {}


def loraplus(model, cfg: RunConfig):
    """A LoRA+ optimizer (B learns loraplus_lr_ratio times faster than A), or None when LoRA+ is off."""
    ratio = cfg.method.lora.loraplus_lr_ratio
    if ratio <= 0 or cfg.method.finetuning not in ("lora", "qlora"):
        return None
    from peft.optimizers import create_loraplus_optimizer
    cls, kw = _optimizer_cls(cfg.train.optimizer)
    return create_loraplus_optimizer(model, cls, lr=cfg.train.learning_rate, loraplus_lr_ratio=ratio,
                                     weight_decay=cfg.train.weight_decay, **kw)
