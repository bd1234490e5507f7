"""The Dataset tab's identity helper: type the assistant's name and maker, preview the identity dataset made
from the bundled template set (engine.data.identity), save it under a name of your choosing (with its
held-out file, which the report card answers at the end of the run) and train on it."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from engine.data import identity
from engine.data import names as dataset_names


@dataclass
class IdentityPanel:
    name: gr.Textbox
    maker: gr.Textbox
    save_as: gr.Textbox
    preview: gr.Button
    save: gr.Button
    message: gr.Markdown
    table: gr.Dataframe


def rows_table(name: str, maker: str):
    import pandas as pd
    train, held = identity.build(name, maker)
    recs = [{"split": "train", "question": r["instruction"], "answer": r["output"]} for r in train]
    recs += [{"split": "held out", "question": r["instruction"], "answer": r["output"]} for r in held]
    return pd.DataFrame(recs, columns=["split", "question", "answer"]), len(train), len(held)


def on_preview(name: str, maker: str):
    """(message, table) for the typed name and maker."""
    try:
        table, n_train, n_held = rows_table(name, maker)
    except identity.IdentityError as e:
        return f"**Not made.** {e}", gr.update()
    return (f"{n_train} training rows and {n_held} held-out questions (phrasings not in the training rows). "
            "**Save** them to train on them.", table)


def on_save(name: str, maker: str, save_as: str, current):
    """Save the dataset and its held-out file, and make it the run's dataset: (message, table, datasets
    widget, preview picker)."""
    save_as = (save_as or "").strip() or identity.default_save_as(name)
    try:
        train_path, held_path = identity.save(name, maker, save_as)
        table, n_train, n_held = rows_table(name, maker)
    except identity.IdentityError as e:
        return f"**Not saved.** {e}", gr.update(), gr.update(), gr.update()
    value = [str(train_path)]
    choices = list(dict.fromkeys([*dataset_names.discovered(), *(current or []), *value]))
    message = (f"Saved **{train_path.name}** ({n_train} rows) and **{held_path.name}** ({n_held} held-out "
               f"questions) in `{train_path.parent}`. The run now trains on it; at the end the report card asks "
               "the held-out questions.")
    return message, table, gr.update(choices=choices, value=value), gr.update(choices=value, value=value[0])


def build() -> IdentityPanel:
    with gr.Accordion("Identity helper: give the assistant a name and a maker", open=False,
                      elem_id="ws-identity"):
        gr.Markdown("Type a name and a maker: an identity dataset is made from the bundled template set "
                    "(`data/reference/identity_template.json`), with held-out questions for the report card.",
                    elem_classes=["ws-note"])
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Assistant name", placeholder="Aria", scale=2, elem_id="ws-identity-name")
            maker = gr.Textbox(label="Made by", placeholder="Acme Labs", scale=2, elem_id="ws-identity-maker")
            save_as = gr.Textbox(label="Save as", placeholder="identity_aria", scale=2, elem_id="ws-identity-save-as",
                                 info="A file name in data/uploads/ (letters, digits, _ and -).")
        with gr.Row():
            preview = gr.Button("Preview", size="md", elem_id="ws-identity-preview")
            save = gr.Button("Save and use", variant="primary", size="md", elem_id="ws-identity-save")
        message = gr.Markdown(elem_id="ws-identity-message")
        table = gr.Dataframe(value=None, headers=["split", "question", "answer"], interactive=False, wrap=True,
                             max_height=320, elem_id="ws-identity-table")
    return IdentityPanel(name, maker, save_as, preview, save, message, table)


def wire(p: IdentityPanel, datasets_widget, picker) -> None:
    p.preview.click(on_preview, [p.name, p.maker], [p.message, p.table], show_progress="hidden")
    p.save.click(on_save, [p.name, p.maker, p.save_as, datasets_widget], [p.message, p.table, datasets_widget, picker],
                 show_progress="hidden")
    p.name.input(lambda n: gr.update(placeholder=identity.default_save_as(n)), [p.name], [p.save_as],
                 show_progress="hidden")
