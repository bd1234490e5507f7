"""Method tab: the fine-tuning method, how the base weights are loaded, and the method's own settings.

Settings of methods other than the chosen one are hidden (see fields.applies)."""
from __future__ import annotations

import gradio as gr

from webui import fields

METHOD_KEYS = ["method.finetuning", "method.stage", "model.quantization", "model.dtype", "model.trust_remote_code"]
LORA_KEYS = ["method.lora.rank", "method.lora.alpha", "method.lora.dropout", "method.lora.targets"]
FREEZE_KEYS = ["method.freeze.trainable_layers"]


def build(state: gr.State) -> list[fields.FieldWidget]:
    cfg = state.value.config
    with gr.Row():
        with gr.Column(scale=1):
            method = fields.build(METHOD_KEYS, cfg)
        with gr.Column(scale=1):
            adapter = fields.build(LORA_KEYS + FREEZE_KEYS, cfg)
    return method + adapter
