"""Config fields as widgets: the widget type comes from the field's type, its label and help text
from the field's own docstring, its bounds from the field's min / max.

Numbers are numbers (gr.Number / gr.Slider), choices are dropdowns or radios, flags are checkboxes.
`applies` says whether a field means anything for the config at hand; the tabs hide those that do not.
"""
from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Any, Optional, Union

import gradio as gr

from engine import config as C
from engine.config import method as method_config
from engine.data import names as dataset_names
from engine.preflight import model_list as model_names

# (minimum, maximum, step) of the fields shown as sliders; the config itself allows wider values.
SLIDERS: dict[str, tuple[float, float, float]] = {
    "method.lora.rank": (1, 256, 1),
    "method.lora.alpha": (1, 512, 1),
    "method.lora.dropout": (0.0, 0.5, 0.01),
    "data.val_size": (0.0, 0.5, 0.01),
    "train.warmup_ratio": (0.0, 0.5, 0.01),
}

# Literal fields with few choices read better as radio buttons.
RADIOS = {"model.quantization", "method.finetuning", "model.dtype", "train.scheduler", "data.on_long_rows",
          "data.on_bad_rows", "distributed.strategy", "distributed.backend"}

TEMPLATES = ["auto", "alpaca", "chatml", "llama3", "qwen", "mistral", "gemma", "phi"]

QUANT_LABELS = {"none": "none (16/32-bit)", "8bit": "8-bit (½ memory)", "4bit": "4-bit NF4 (¼ memory)"}


@dataclass(frozen=True)
class FieldWidget:
    """One config field and the widget that edits it."""
    key: str
    component: gr.components.Component


LABELS = {
    "model.name_or_path": "Model",
    "data.datasets": "Datasets",
    "method.lora.rank": "LoRA rank",
    "method.lora.alpha": "LoRA alpha",
    "method.lora.dropout": "LoRA dropout",
    "method.lora.targets": "LoRA target modules",
    "method.freeze.trainable_layers": "trainable layers",
    "method.lora.init": "LoRA initialisation",
    "method.lora.use_rslora": "rsLoRA",
    "method.lora.use_dora": "DoRA",
    "method.lora.loraplus_lr_ratio": "LoRA+ learning-rate ratio (B over A)",
    "method.quant.type": "4-bit type",
    "method.quant.double_quant": "double quantisation",
    "method.quant.compute_dtype": "4-bit compute dtype",
    "method.ia3.targets": "IA3 target modules",
    "method.bottleneck.size": "bottleneck size",
    "method.pref.beta": "beta",
    "output.run_name": "Run name",
}


# Fields holding module names, edited as comma-separated text ("targets": empty or 'all' means all).
LIST_TEXT = {"method.lora.targets": "targets", "method.ia3.targets": "targets",
             "method.freeze.trainable_modules": "names", "method.freeze.extra_modules": "names"}


def label(key: str) -> str:
    return LABELS.get(key, key.split(".")[-1].replace("_", " "))


def build(keys: list[str], cfg: C.RunConfig) -> list[FieldWidget]:
    """Widgets for these keys in the current layout, showing cfg's values, hidden where they do not apply."""
    out = []
    for key in keys:
        w = widget(key, C.get(cfg, key))
        w.visible = applies(key, cfg)
        out.append(FieldWidget(key, w))
    return out


def _optional_of(tp: Any) -> Optional[Any]:
    if typing.get_origin(tp) is Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def widget(key: str, value: Any) -> gr.components.Component:
    """The widget for one dotted config key, showing `value`."""
    tp, _, meta = C.field_info(key)
    help_text = meta.get("help", "")
    common = dict(label=label(key), info=help_text, elem_classes=["cfg-field"])
    shown = to_widget(key, value)
    if key in SLIDERS:
        lo, hi, step = SLIDERS[key]
        return gr.Slider(minimum=lo, maximum=hi, step=step, value=shown, **common)
    if key == "data.datasets":
        return gr.Dropdown(choices=dataset_names.discovered(), value=shown, multiselect=True,
                           allow_custom_value=True, **common)
    if key == "data.eval_datasets":
        return gr.Dropdown(choices=list(dataset_names.bundled(include_eval=True)), value=shown, multiselect=True,
                           allow_custom_value=True, **common)
    if key == "data.columns":
        return gr.Textbox(value=shown, lines=1, placeholder="instruction=question, output=answer", **common)
    if key == "model.name_or_path":
        return gr.Dropdown(choices=model_names.model_list(), value=shown, allow_custom_value=True, **common)
    if key == "method.stage":
        return gr.Dropdown(choices=list(method_config.IMPLEMENTED_STAGES), value=shown, **common)
    if key == "model.quantization":
        return gr.Radio(choices=[(QUANT_LABELS[c], c) for c in C.choices(tp)], value=shown, **common)
    opts = C.choices(tp)
    if opts is not None:
        if key in RADIOS:
            return gr.Radio(choices=list(opts), value=shown, **common)
        return gr.Dropdown(choices=list(opts), value=shown, **common)
    if key == "data.template":
        return gr.Dropdown(choices=TEMPLATES, value=shown, allow_custom_value=True, **common)
    if tp is bool:
        return gr.Checkbox(value=shown, **common)
    inner = _optional_of(tp) or tp
    if inner in (int, float):
        return gr.Number(value=shown, precision=0 if inner is int else None,
                         minimum=meta.get("min", meta.get("min_exclusive")), maximum=meta.get("max"), **common)
    return gr.Textbox(value=shown, lines=1, **common)


def to_widget(key: str, value: Any) -> Any:
    """A config value as its widget shows it."""
    if key in LIST_TEXT:
        return value if isinstance(value, str) else ", ".join(value)
    if key in ("data.datasets", "data.eval_datasets"):
        return list(value)
    if key == "data.columns":
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value


def to_config(key: str, shown: Any) -> Any:
    """A widget's value as the config holds it (ints stay ints, empty optional numbers become None)."""
    tp, default, _ = C.field_info(key)
    if key in LIST_TEXT:
        text = str(shown or "").strip()
        names = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
        if LIST_TEXT[key] == "targets":
            return "all" if text in ("", "all") else names
        return names
    if key == "data.columns":  # "instruction=question, output=answer"
        pairs = [p.partition("=") for p in str(shown or "").replace("\n", ",").split(",") if p.strip()]
        return {k.strip(): v.strip() for k, _, v in pairs}
    inner = _optional_of(tp)
    if inner is not None and (shown is None or shown == ""):
        return None
    base = inner or tp
    if base is int and isinstance(shown, float) and shown.is_integer():
        return int(shown)
    if base is float and isinstance(shown, int) and not isinstance(shown, bool):
        return float(shown)
    if base is str and shown is None:
        return ""
    return shown


def applies(key: str, cfg: C.RunConfig) -> bool:
    """Whether a field means anything for this config; fields that do not are hidden, not ignored."""
    decided = method_config.applies(key, cfg)  # method and stage fields: engine/method_config.py decides
    if decided is not None:
        return decided
    ft = cfg.method.finetuning
    if key.startswith("method.lora."):
        return ft in ("lora", "qlora")
    if key.startswith("method.freeze."):
        return ft == "freeze"
    if key == "model.quantization":
        return ft == "lora"  # qlora is 4-bit by definition; full and freeze train the weights themselves
    if key == "train.eval_steps":
        return cfg.data.val_size > 0
    if key == "distributed.cpu_offload":
        return cfg.distributed.strategy in ("fsdp", "deepspeed_zero2", "deepspeed_zero3")
    if key in ("distributed.master_addr", "distributed.master_port", "distributed.node_rank"):
        return cfg.distributed.nnodes > 1
    return True
