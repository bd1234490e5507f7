"""Dataset tab: which data and how it is tokenised, and a preview of exactly what the model will be
trained on (format, rows, problems named, token lengths against the cutoff, the trained tokens of an
example highlighted). The preview is computed without torch (engine.data.preview)."""
from __future__ import annotations

import gradio as gr

from webui import dataset_preview, fields, identity_panel

KEYS = ["data.datasets", "data.eval_datasets", "data.template", "data.system", "data.format", "data.columns",
        "data.cutoff_len", "data.on_long_rows", "data.on_bad_rows", "data.val_size", "data.max_samples"]

# Kept when data.datasets changes: general rows mixed in, and the held-out questions of the report card.
KEEP_KEYS = ["retain.method", "retain.dataset", "retain.share", "retain.max_new_tokens", "report.held_out",
             "report.target", "report.max_questions", "report.max_new_tokens", "report.drift", "report.drift_tokens"]
KEYS += KEEP_KEYS

# Edits that change what the preview shows (besides picking another dataset).
PREVIEW_KEYS = ("data.template", "data.system", "data.format", "data.columns", "data.cutoff_len")


def build(state: gr.State) -> list[fields.FieldWidget]:
    cfg = state.value.config
    gr.Markdown("Pick bundled or recently used datasets, upload a file, or type a local path (.json, .jsonl, .csv, "
                ".parquet), a LLaMA-Factory data folder (`folder:name`) or a hub id and press Enter. Everything "
                "below is checked before you press Start.", elem_classes=["ws-note"])
    with gr.Row():
        with gr.Column(scale=3):
            main = fields.build(KEYS[:6], cfg)
        with gr.Column(scale=2):
            rest = fields.build(KEYS[6:-len(KEEP_KEYS)], cfg)
    with gr.Accordion("Keep what the model knew, and the report card", open=False):
        keep = fields.build(KEEP_KEYS, cfg)
    widgets = main + rest + keep
    by_key = {w.key: w for w in widgets}
    helper = identity_panel.build()
    panel = dataset_preview.build(state)
    dataset_preview.wire(panel, state, datasets_widget=by_key["data.datasets"].component,
                         watched=[by_key[k] for k in PREVIEW_KEYS])
    identity_panel.wire(helper, by_key["data.datasets"].component, panel.picker)
    return widgets
