"""Fine-tuning methods: which weights train. LoRA and QLoRA through peft; freeze and full by hand
(they only flip requires_grad). Heavy module."""
from __future__ import annotations

import torch
from torch import nn

from engine.config import RunConfig


class MethodError(ValueError):
    pass


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer block list of any causal LM: the longest ModuleList in the model."""
    best = None
    for _, m in model.named_modules():
        if isinstance(m, nn.ModuleList) and (best is None or len(m) > len(best)):
            best = m
    if best is None:
        raise MethodError("method.finetuning=freeze: cannot find this model's layer list; use lora or full")
    return best


def linear_module_names(model: nn.Module) -> list[str]:
    """Distinct leaf names of every linear layer except the output head (what targets='all' adapts)."""
    names = set()
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for full, m in model.named_modules():
        if m is out_emb:
            continue
        if isinstance(m, nn.Linear) or type(m).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(full.split(".")[-1])
    return sorted(names)


def apply(model: nn.Module, cfg: RunConfig) -> nn.Module:
    ft = cfg.method.finetuning
    if ft in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
        if getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False):
            model = prepare_model_for_kbit_training(
                model, use_gradient_checkpointing=cfg.train.gradient_checkpointing)
        lc = cfg.method.lora
        targets = lc.targets
        if targets != "all":
            known = set(linear_module_names(model))
            missing = [t for t in targets if t not in known]
            if missing:
                raise MethodError(f"method.lora.targets: {missing} are not linear layers of this model; "
                                  f"its linear layers are {sorted(known)}")
        else:
            targets = linear_module_names(model)
        pc = LoraConfig(r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout, target_modules=targets,
                        task_type="CAUSAL_LM", bias="none")
        return get_peft_model(model, pc)
    if ft == "freeze":
        layers = decoder_layers(model)
        n = cfg.method.freeze.trainable_layers
        if n > len(layers):
            raise MethodError(f"method.freeze.trainable_layers: {n} is more than the model's {len(layers)} layers")
        for p in model.parameters():
            p.requires_grad_(False)
        for layer in layers[-n:]:
            for p in layer.parameters():
                p.requires_grad_(True)
        return model
    if ft == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    raise MethodError(f"method.finetuning: {ft!r} is not supported")


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count as their real element number."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def is_adapter(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def cast_trainable_fp32(model: nn.Module) -> None:
    """Trainable weights in fp32 when the base is half precision (mixed precision keeps masters in fp32)."""
    for p in model.parameters():
        if p.requires_grad and p.dtype in (torch.float16, torch.bfloat16):
            p.data = p.data.float()
