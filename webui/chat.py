"""Chat tab: its place. Talking to the tuned model (and the base one beside it) comes with its own issue."""
from __future__ import annotations

import gradio as gr

from webui import fields


def build(state: gr.State) -> list[fields.FieldWidget]:
    gr.Markdown(
        "### Chat\n"
        "Here you will talk to a finished run's model, with the base model's answer beside it, using the "
        "same chat template the run trained with. The chat model runs in its own worker process, and "
        "**Unload** frees its memory.\n\n*Coming with its own issue.*",
        elem_classes=["ws-placeholder"])
    return []
