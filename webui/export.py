"""Export tab: its place. Merging adapters and writing safetensors / GGUF / Ollama files comes with its own issue."""
from __future__ import annotations

import gradio as gr

from webui import fields


def build(state: gr.State) -> list[fields.FieldWidget]:
    gr.Markdown(
        "### Export\n"
        "Here you will merge a run's adapter into its base model and write a standard folder "
        "(safetensors, sharded, with the chat template and end-of-turn token carried over), a GGUF file and "
        "an Ollama Modelfile. Export runs in its own worker process.\n\n*Coming with its own issue.*",
        elem_classes=["ws-placeholder"])
    return []
