"""Bottleneck adapters (Houlsby et al. 2019), written in the peft style because no maintained
library in this environment fits any causal LM (AdapterHub's `adapters` is not installed and
supports a fixed list of architectures).

After each attention block and / or feed-forward block of every decoder layer, a small residual MLP
hidden -> size -> hidden is added. The up projection starts at zero, so training starts from the
base model exactly. Saved as `bottleneck_config.json` + `adapter_model.safetensors` (adapter weights
only); `load()` puts them back on a freshly loaded base. Heavy (torch, safetensors).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from engine.modeling.layers import MethodError, decoder_layers

CONFIG_FILE = "bottleneck_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"
ATTN_NAMES = ("self_attn", "attention", "attn", "self_attention")
FFN_NAMES = ("mlp", "feed_forward", "ffn")


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden: int, size: int):
        super().__init__()
        self.down = nn.Linear(hidden, size)
        self.act = nn.GELU()
        self.up = nn.Linear(size, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x = h.to(self.down.weight.dtype)
        return h + self.up(self.act(self.down(x))).to(h.dtype)


def _hook(adapter: BottleneckAdapter):
    def after(module, args, output):
        if isinstance(output, tuple):
            return (adapter(output[0]),) + tuple(output[1:])
        return adapter(output)
    return after


def _child(layer: nn.Module, names: tuple[str, ...]) -> tuple[str, nn.Module] | None:
    for n in names:
        m = getattr(layer, n, None)
        if isinstance(m, nn.Module):
            return n, m
    return None


class BottleneckModel(nn.Module):
    """A causal LM with bottleneck adapters; only the adapters train. Attribute access falls through
    to the base model (like peft's PeftModel), so the Trainer and generate() work unchanged."""

    def __init__(self, base: nn.Module, size: int, placement: str = "both"):
        super().__init__()
        self.base_model = base
        self.bottleneck = {"size": size, "placement": placement}
        hidden = base.config.hidden_size
        for p in base.parameters():
            p.requires_grad_(False)
        self.adapters = nn.ModuleDict()
        want = {"both": (ATTN_NAMES, FFN_NAMES), "attention": (ATTN_NAMES,), "ffn": (FFN_NAMES,)}[placement]
        for i, layer in enumerate(decoder_layers(base)):
            for names in want:
                found = _child(layer, names)
                if found is None:
                    raise MethodError(f"method.finetuning=bottleneck: layer {i} has none of {names}; "
                                      "this architecture is not supported, use lora")
                name, mod = found
                ad = BottleneckAdapter(hidden, size).to(next(mod.parameters()).device)
                self.adapters[f"{i}_{name}"] = ad
                mod.register_forward_hook(_hook(ad))

    def forward(self, *args, **kwargs):
        return self.base_model(*args, **kwargs)

    def generate(self, *args, **kwargs):
        return self.base_model.generate(*args, **kwargs)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.base_model, name)

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().contiguous() for k, v in self.adapters.state_dict().items()}

    def save_pretrained(self, out: str | Path, **_) -> None:
        from safetensors.torch import save_file
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter_state_dict(), str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps({"peft_type": "BOTTLENECK", **self.bottleneck,
                                                   "hidden_size": self.base_model.config.hidden_size}))

    def load_adapter_weights(self, folder: str | Path) -> None:
        from safetensors.torch import load_file
        state = load_file(str(Path(folder) / WEIGHTS_FILE))
        self.adapters.load_state_dict(state, strict=True)


def load(base: nn.Module, folder: str | Path) -> BottleneckModel:
    conf = json.loads((Path(folder) / CONFIG_FILE).read_text())
    model = BottleneckModel(base, conf["size"], conf["placement"])
    model.load_adapter_weights(folder)
    return model


def is_bottleneck_folder(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


def trainer_class(base_cls):
    """A subclass of a Trainer class that checkpoints and resumes only the adapter weights."""
    class BottleneckTrainer(base_cls):
        def _save(self, output_dir=None, state_dict=None):
            output_dir = output_dir or self.args.output_dir
            self.model.save_pretrained(output_dir)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            (model or self.model).load_adapter_weights(resume_from_checkpoint)

    return BottleneckTrainer
