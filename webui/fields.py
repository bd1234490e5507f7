"""Config fields as widgets: the widget type comes from the field's type (and its `widget` metadata),
its label and help text from the field's own metadata, its bounds from the field's min / max.

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
from engine.data import templates
from engine.preflight import model_list as model_names

@dataclass(frozen=True)
class FieldWidget:
    """One config field and the widget that edits it."""
    key: str
    component: gr.components.Component


def label(key: str) -> str:
    """The field's label (its `label` metadata), else its name in words."""
    return C.field_info(key)[2].get("label") or key.split(".")[-1].replace("_", " ")


def _names_field(key: str) -> Optional[bool]:
    """For a field edited as comma-separated module names: True when an empty box means 'all' (targets),
    False for a plain list of names; None for every other field."""
    tp, _, meta = C.field_info(key)
    if meta.get("widget") != "names":
        return None
    return typing.get_origin(tp) is Union


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
    kind = meta.get("widget")
    if kind == "slider":  # its range is the field's own: what the widget allows, the config accepts
        return gr.Slider(minimum=meta["min"], maximum=meta["max"], step=meta.get("step", 1), value=shown, **common)
    if key == "data.datasets":
        return gr.Dropdown(choices=dataset_names.discovered(), value=shown, multiselect=True,
                           allow_custom_value=True, **common)
    if key == "data.eval_datasets":
        return gr.Dropdown(choices=list(dataset_names.bundled(include_eval=True)), value=shown, multiselect=True,
                           allow_custom_value=True, **common)
    if key in ("retain.dataset", "report.held_out"):
        extra = ["auto", "none"] if key == "report.held_out" else []
        return gr.Dropdown(choices=extra + list(dataset_names.bundled(include_eval=key == "report.held_out")),
                           value=shown, allow_custom_value=True, **common)
    if key == "data.columns":
        return gr.Textbox(value=shown, lines=1, placeholder="instruction=question, output=answer", **common)
    if key == "model.name_or_path":
        return gr.Dropdown(choices=model_names.model_list(), value=shown, allow_custom_value=True, **common)
    if key == "method.stage":
        return gr.Dropdown(choices=list(method_config.IMPLEMENTED_STAGES), value=shown, **common)
    if kind == "checkboxes":  # a list of choices: one box each
        return gr.CheckboxGroup(choices=list(C.choices(typing.get_args(tp)[0])), value=list(shown), **common)
    opts = C.choices(tp)
    if opts is not None:
        named = meta.get("choice_labels", {})
        opts = [(named[c], c) if c in named else c for c in opts]
        if kind == "radio":
            return gr.Radio(choices=opts, value=shown, **common)
        return gr.Dropdown(choices=opts, value=shown, **common)
    if key == "data.template":
        return gr.Dropdown(choices=templates.names(), value=shown, allow_custom_value=True, **common)
    if tp is bool:
        return gr.Checkbox(value=shown, **common)
    inner = _optional_of(tp) or tp
    if inner in (int, float):
        return gr.Number(value=shown, precision=0 if inner is int else None,
                         minimum=meta.get("min", meta.get("min_exclusive")), maximum=meta.get("max"), **common)
    return gr.Textbox(value=shown, lines=1, **common)


def to_widget(key: str, value: Any) -> Any:
    """A config value as its widget shows it."""
    if _names_field(key) is not None:
        return value if isinstance(value, str) else ", ".join(value)
    if key in ("data.datasets", "data.eval_datasets"):
        return list(value)
    if key == "data.columns":
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value


def to_config(key: str, shown: Any) -> Any:
    """A widget's value as the config holds it (ints stay ints, empty optional numbers become None)."""
    tp, default, _ = C.field_info(key)
    all_when_empty = _names_field(key)
    if all_when_empty is not None:
        text = str(shown or "").strip()
        names = [t.strip() for t in text.replace("\n", ",").split(",") if t.strip()]
        if all_when_empty:
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
    decided = method_config.applies(key, cfg)  # method and stage fields: engine.config.method decides
    if decided is not None:
        return decided
    if key in ("retain.dataset", "retain.share"):
        return cfg.retain.method != "none"
    if key == "retain.max_new_tokens":
        return cfg.retain.method == "replay"
    if key == "train.min_epochs":
        return bool(cfg.train.target_steps)
    if key == "train.eval_steps":
        return cfg.data.val_size > 0
    if key == "distributed.cpu_offload":
        return cfg.distributed.strategy in ("fsdp", "deepspeed_zero2", "deepspeed_zero3")
    if key in ("distributed.master_addr", "distributed.master_port", "distributed.node_rank"):
        return cfg.distributed.nnodes > 1
    return True
