"""The structure of a loaded causal LM, for the methods that reach into it: its decoder layer list and
the names of its linear layers (what LoRA targets 'all' means). Heavy (torch)."""
from __future__ import annotations

from torch import nn

from engine.preflight.shape import HEAD_NAMES


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
    """Distinct leaf names of every linear layer except the output / score head (what targets='all'
    adapts)."""
    names = set()
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for full, m in model.named_modules():
        if m is out_emb or full.split(".")[-1] in HEAD_NAMES:
            continue
        if isinstance(m, nn.Linear) or type(m).__name__ in ("Linear4bit", "Linear8bitLt"):
            names.add(full.split(".")[-1])
    return sorted(names)
