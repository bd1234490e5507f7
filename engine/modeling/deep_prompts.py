"""P-Tuning v2 (Liu et al. 2022): trainable prompts as extra keys and values in front of the attention of
the layers you choose. peft's prefix tuning puts them in every layer (through the KV cache, which has
no way to skip a layer), so this is Whetstone's own module, in the peft style and with the save / load
behaviour of the bottleneck adapters. With every layer chosen and no reparameterisation it computes
exactly what peft's prefix tuning does (tests/test_prompt_methods.py checks the logits).

How: a pre-hook on each chosen attention module hands it a cache whose `update` returns the prompt's
keys / values in front of the real ones (the real cache, if any, is updated as usual), and widens its
attention mask by the prompt's columns; a pre-hook on the model computes the prompts once per forward
and moves the real tokens' positions up by the prompt length, as peft does for prefix tuning. Works
for models whose attention calls `cache.update` and takes a 4D (eager / SDPA) mask or none (Llama,
Qwen, Mistral, Gemma and most others in transformers); flash-attention models are switched to SDPA.

Saved as `deep_prompt_config.json` + `adapter_model.safetensors` (the prompt weights, encoder included,
so a checkpoint resumes); `load()` puts them back on a freshly loaded base. Heavy (torch, safetensors).
"""
from __future__ import annotations

import inspect
import json
from pathlib import Path

import torch
from torch import nn

from engine.config import layer_choice
from engine.modeling.bottleneck import ATTN_NAMES
from engine.modeling.layers import MethodError, decoder_layers

CONFIG_FILE = "deep_prompt_config.json"
WEIGHTS_FILE = "adapter_model.safetensors"


def kv_shape(config) -> tuple[int, int]:
    """(key / value heads, head width) of a transformers config."""
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return kv_heads, head_dim


class PromptEncoder(nn.Module):
    """n virtual tokens -> (n, out) prompt values: the values themselves ('none'), or an n x token_dim
    embedding through Linear -> tanh -> Linear ('mlp', prefix tuning's reparameterisation) or through a
    bidirectional 2-layer LSTM -> Linear -> ReLU -> Linear ('lstm', P-tuning's)."""

    def __init__(self, n: int, out: int, token_dim: int, kind: str = "none", hidden: int = 512):
        super().__init__()
        self.kind = kind
        if kind == "none":
            self.embedding = nn.Embedding(n, out)
        elif kind == "mlp":
            self.embedding = nn.Embedding(n, token_dim)
            self.transform = nn.Sequential(nn.Linear(token_dim, hidden), nn.Tanh(), nn.Linear(hidden, out))
        elif kind == "lstm":
            self.embedding = nn.Embedding(n, token_dim)
            self.lstm = nn.LSTM(token_dim, hidden, num_layers=2, bidirectional=True, batch_first=True)
            self.transform = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Linear(2 * hidden, out))
        else:
            raise MethodError(f"method.prompt.reparameterization: {kind!r} is not one of none, mlp, lstm")

    def features(self) -> torch.Tensor:
        """What the last linear layer reads (for an encoder), one row per virtual token."""
        x = self.embedding.weight
        if self.kind == "lstm":
            x = self.lstm(x.unsqueeze(0))[0][0]
        return self.transform[:-1](x)

    def forward(self) -> torch.Tensor:
        if self.kind == "none":
            return self.embedding.weight
        return self.transform[-1](self.features())

    @torch.no_grad()
    def start_from(self, flat_values: torch.Tensor) -> float:
        """Make the first output equal these values (n x out); the largest difference left."""
        if self.kind == "none":
            self.embedding.weight.copy_(flat_values)
            return 0.0
        from engine.modeling.prompt_init import fit_last_linear
        return fit_last_linear(self.features(), self.transform[-1], flat_values)


class _PrefixedCache:
    """Stands in for the layer's cache: update() stores the real keys / values in the real cache (if
    any) and returns them with the prompt's in front. Anything else is the real cache's."""

    def __init__(self, real, key: torch.Tensor, value: torch.Tensor):
        self.real, self.key, self.value = real, key, value

    def update(self, key_states, value_states, layer_idx, *args, **kwargs):
        if self.real is not None:
            key_states, value_states = self.real.update(key_states, value_states, layer_idx, *args, **kwargs)
        b = key_states.shape[0]
        k = self.key.to(key_states.dtype).expand(b, -1, -1, -1)
        v = self.value.to(value_states.dtype).expand(b, -1, -1, -1)
        return torch.cat([k, key_states], dim=2), torch.cat([v, value_states], dim=2)

    def __getattr__(self, name):
        if self.real is None:
            raise AttributeError(name)
        return getattr(self.real, name)


def _widened_mask(mask, n: int, q_len: int, past: int, eager: bool, ref: torch.Tensor):
    """The attention mask with n always-visible prompt columns in front. None (SDPA's plain causal case)
    becomes an explicit causal mask, since SDPA's own causal flag would align the prompt wrongly."""
    if mask is None:
        i = torch.arange(q_len, device=ref.device).unsqueeze(1)
        j = torch.arange(past + q_len, device=ref.device).unsqueeze(0)
        mask = (j <= i + past)[None, None]
        if eager:
            mask = torch.zeros(mask.shape, dtype=ref.dtype, device=ref.device).masked_fill(
                ~mask, torch.finfo(ref.dtype).min)
    if mask.dim() != 4:
        raise MethodError("method.finetuning=ptuning_v2 needs a 4D attention mask (eager or sdpa attention)")
    lead = mask.shape[:-1] + (n,)
    if mask.dtype == torch.bool:
        front = torch.ones(lead, dtype=torch.bool, device=mask.device)
    else:
        front = torch.zeros(lead, dtype=mask.dtype, device=mask.device)
    return torch.cat([front, mask], dim=-1)


def _attention(layer: nn.Module, i: int) -> nn.Module:
    for name in ATTN_NAMES:
        m = getattr(layer, name, None)
        if isinstance(m, nn.Module):
            return m
    raise MethodError(f"method.finetuning=ptuning_v2: layer {i} has none of {ATTN_NAMES}; this architecture is "
                      "not supported, use prefix or lora")


class DeepPromptModel(nn.Module):
    """A causal LM with P-Tuning v2 prompts in the chosen layers; only the prompts train. Attribute access
    falls through to the base model (like peft's PeftModel), so the Trainer and generate() work unchanged."""

    def __init__(self, base: nn.Module, num_virtual_tokens: int, layers: str = "all",
                 reparameterization: str = "none", hidden: int = 512):
        super().__init__()
        self.base_model = base
        blocks = decoder_layers(base)
        try:
            chosen = layer_choice.resolve(layers, len(blocks))
        except ValueError as e:
            raise MethodError(str(e)) from None
        self.kv_heads, self.head_dim = kv_shape(base.config)
        kv_dim = self.kv_heads * self.head_dim
        self.deep_prompt = {"num_virtual_tokens": num_virtual_tokens, "layers": layers, "layer_ids": chosen,
                            "reparameterization": reparameterization, "hidden": hidden,
                            "kv_heads": self.kv_heads, "head_dim": self.head_dim}
        for p in base.parameters():
            p.requires_grad_(False)
        impl = getattr(base.config, "_attn_implementation", "eager")
        if impl not in ("eager", "sdpa"):
            print(f"note: ptuning_v2 runs {impl} attention as sdpa (its prompts need a 4D mask)", flush=True)
            base.set_attn_implementation("sdpa")
        self.prompt_encoder = PromptEncoder(num_virtual_tokens, len(chosen) * 2 * kv_dim, kv_dim,
                                            reparameterization, hidden).to(next(base.parameters()).device)
        self._prompts: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self.prompted: list[nn.Module] = []  # the attention modules that receive prompts, in layer order
        for i in chosen:
            attn = _attention(blocks[i], i)
            attn.register_forward_pre_hook(self._hook_for(i, attn), with_kwargs=True)
            self.prompted.append(attn)
        base.register_forward_pre_hook(self._before_model, with_kwargs=True)

    # ---- the prompts ---------------------------------------------------------------------------
    def prompt_values(self) -> torch.Tensor:
        """(chosen layers, 2, kv_heads, n, head_dim): each chosen layer's prompt keys and values."""
        n, k = self.deep_prompt["num_virtual_tokens"], len(self.deep_prompt["layer_ids"])
        flat = self.prompt_encoder()
        return flat.view(n, k, 2, self.kv_heads, self.head_dim).permute(1, 2, 3, 0, 4)

    def start_from(self, kv_all_layers: torch.Tensor) -> float:
        """Start the prompts from keys / values of every layer (engine.modeling.prompt_init.text_kv)."""
        from engine.modeling.prompt_init import flat
        return self.prompt_encoder.start_from(flat(kv_all_layers[self.deep_prompt["layer_ids"]]))

    def _before_model(self, module, args, kwargs):
        dtype = next(p.dtype for p in module.parameters() if p.is_floating_point())
        kv = self.prompt_values().to(dtype)
        self._prompts = {i: (kv[j, 0], kv[j, 1]) for j, i in enumerate(self.deep_prompt["layer_ids"])}
        ids = kwargs.get("input_ids", args[0] if args else None)
        x = ids if ids is not None else kwargs.get("inputs_embeds")
        n = self.deep_prompt["num_virtual_tokens"]
        pos = kwargs.get("position_ids")
        if pos is None and x is not None:  # what the model would use, moved up by the prompt length
            cache = kwargs.get("cache", kwargs.get("past_key_values"))
            past = cache.get_seq_length() if cache is not None else 0
            pos = torch.arange(past, past + x.shape[1], device=x.device).unsqueeze(0)
        if pos is not None:
            kwargs["position_ids"] = pos + n
        return args, kwargs

    def _hook_for(self, i: int, attn: nn.Module):
        cache_kw = "cache" if "cache" in inspect.signature(attn.forward).parameters else "past_key_values"

        def before_attention(module, args, kwargs):
            key, value = self._prompts[i]
            hidden = kwargs.get("hidden_states", args[0] if args else None)
            real = kwargs.get(cache_kw)
            past = real.get_seq_length(i) if real is not None else 0
            eager = getattr(module.config, "_attn_implementation", "eager") == "eager"
            kwargs["attention_mask"] = _widened_mask(kwargs.get("attention_mask"), key.shape[1], hidden.shape[1],
                                                     past, eager, key)
            kwargs[cache_kw] = _PrefixedCache(real, key.unsqueeze(0), value.unsqueeze(0))
            return args, kwargs
        return before_attention

    # ---- the peft-style surface ----------------------------------------------------------------
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
        return {k: v.detach().cpu().contiguous() for k, v in self.prompt_encoder.state_dict().items()}

    def save_pretrained(self, out: str | Path, **_) -> None:
        from safetensors.torch import save_file
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        save_file(self.adapter_state_dict(), str(out / WEIGHTS_FILE))
        (out / CONFIG_FILE).write_text(json.dumps({"peft_type": "P_TUNING_V2", **self.deep_prompt}, indent=1))

    def load_adapter_weights(self, folder: str | Path) -> None:
        from safetensors.torch import load_file
        state = load_file(str(Path(folder) / WEIGHTS_FILE))
        self.prompt_encoder.load_state_dict(state, strict=True)


def load(base: nn.Module, folder: str | Path) -> DeepPromptModel:
    conf = json.loads((Path(folder) / CONFIG_FILE).read_text())
    model = DeepPromptModel(base, conf["num_virtual_tokens"], conf["layers"], conf["reparameterization"],
                            conf["hidden"])
    model.load_adapter_weights(folder)
    return model


def is_deep_prompt_folder(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


PEFT_PROMPT_TYPES = ("PREFIX_TUNING", "PROMPT_TUNING", "P_TUNING")


def peft_prompt_type(folder: str | Path) -> str | None:
    """The peft_type of a peft prompt-learning adapter folder (prefix / prompt / P-tuning), else None."""
    p = Path(folder) / "adapter_config.json"
    if not p.is_file():
        return None
    kind = json.loads(p.read_text()).get("peft_type")
    return kind if kind in PEFT_PROMPT_TYPES else None


@torch.no_grad()
def load_peft_prompt(base: nn.Module, folder: str | Path) -> DeepPromptModel:
    """A peft prefix / prompt / P-tuning adapter, for inference, as prompts in every layer. peft's own
    generate() loses these prompts with this transformers (it hands them over as `past_key_values`,
    which the model now ignores for `cache`), so chat and evaluation would answer as the base model.
    peft saves the final prompts: for prefix tuning every layer's keys / values (after any projection),
    which are exactly this module's prompts; for prompt / P-tuning the virtual tokens' input embeddings
    (after any encoder), which come first and attend only to each other, so their keys / values at
    every layer are fixed: computed once here, they give the real tokens what peft's forward gives."""
    from safetensors.torch import load_file

    from engine.modeling.prompt_init import cache_kv, flat
    conf = json.loads((Path(folder) / "adapter_config.json").read_text())
    emb = load_file(str(Path(folder) / WEIGHTS_FILE))["prompt_embeddings"]
    if conf["peft_type"] == "PREFIX_TUNING":
        values = emb
    else:  # computed on the plain base, before the prompts' hooks are on it
        p = next(base.parameters())
        values = flat(cache_kv(base, inputs_embeds=emb[None].to(p.device, p.dtype)))
    model = DeepPromptModel(base, conf["num_virtual_tokens"], "all", "none")
    model.prompt_encoder.embedding.weight.copy_(values.to(model.prompt_encoder.embedding.weight.device))
    model.deep_prompt["from_peft"] = conf["peft_type"]
    return model
