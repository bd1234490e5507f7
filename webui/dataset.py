"""Dataset tab: which data, and how it is tokenised. (Previews and row checks come with their own issue.)"""
from __future__ import annotations

import gradio as gr

from webui import fields

KEYS = ["data.datasets", "data.template", "data.cutoff_len", "data.on_long_rows", "data.val_size",
        "data.max_samples"]


def build(state: gr.State) -> list[fields.FieldWidget]:
    cfg = state.value.config
    gr.Markdown("Pick bundled demo sets, or type a local file path (.json, .jsonl, .csv, .parquet) or a hub id "
                "into the box and press Enter.", elem_classes=["ws-note"])
    with gr.Row():
        with gr.Column(scale=3):
            datasets = fields.build(KEYS[:2], cfg)
        with gr.Column(scale=2):
            rest = fields.build(KEYS[2:], cfg)
    return datasets + rest
