"""The Dataset tab's preview: what the model will be trained on, seen before Start.

For the dataset picked: the detected format and row count, every unusable row named, a page of rows,
a Plotly histogram of token lengths with the cutoff marked and how many rows it cuts, and one example
rendered through the chat template with the trained tokens highlighted and the masked prompt greyed.
Also an upload box (files are kept in data/uploads/ and added to the run's datasets).

The numbers come from engine.data.preview (no torch, no transformers in this process).
"""
from __future__ import annotations

import html
import os
import re
import shutil
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

import gradio as gr
import plotly.graph_objects as go

from engine import config as C
from engine.data import names as dataset_names
from engine.data import preview
from engine.data.files import SUFFIXES, DataError
from webui import charts

PAGE_SIZE = 10


@dataclass
class PreviewPanel:
    picker: gr.Dropdown
    refresh: gr.Button
    upload: gr.File
    summary: gr.Markdown
    histogram: gr.Plot
    example: gr.HTML
    example_row: gr.Number
    table: gr.Dataframe
    page: gr.Number


def histogram_figure(lengths: list[int], cutoff_len: int, empty_reason: str = "no tokenizer on this machine yet"
                     ) -> go.Figure:
    """Built in one call with the live charts' template (charts.figure_of says why)."""
    h = preview.histogram(lengths, cutoff_len)
    traces, shapes, notes = [], [], []
    if h["total"]:
        edges = h["edges"]
        traces.append(dict(type="bar", x=[(a + b) / 2 for a, b in zip(edges, edges[1:])], y=h["counts"],
                           width=[b - a for a, b in zip(edges, edges[1:])], name="rows",
                           marker=dict(color=["#e03131" if a >= cutoff_len else "#4263eb" for a in edges[:-1]]),
                           hovertemplate="%{x:.0f} tokens: %{y} rows<extra></extra>"))
        shapes.append(dict(type="line", x0=cutoff_len, x1=cutoff_len, xref="x", y0=0, y1=1, yref="y domain",
                           line=dict(color="#e03131", dash="dash")))
        notes.append(dict(text=f"cutoff_len {cutoff_len}", showarrow=False, x=cutoff_len, xref="x", xanchor="left",
                          y=1, yref="y domain", yanchor="top"))
    over = h["over"]
    title = (f"Token lengths of {h['total']} rows — {over} over the cutoff ({'cut' if over else 'none cut'})"
             if h["total"] else f"Token lengths ({empty_reason})")
    return charts.figure_of(traces, dict(
        title=dict(text=title, font=dict(size=14)), template=charts.TEMPLATE, height=300,
        margin=dict(l=40, r=20, t=40, b=40), xaxis=dict(title=dict(text="tokens per example")),
        yaxis=dict(title=dict(text="rows")), bargap=0.02, showlegend=False, shapes=shapes, annotations=notes))


def summary_markdown(insp: preview.Inspection) -> str:
    if insp.error:
        return (f'<div class="ws-data-error" style="color:#c92a2a"><b>Cannot use this dataset.</b> '
                f'{html.escape(insp.error)}</div>')
    c = insp.counts
    lines = [f"**{html.escape(insp.source)}** — format **{insp.format}**, **{insp.rows}** rows "
             f"(columns: {', '.join(html.escape(x) for x in insp.columns)})"]
    if insp.lengths:
        n = len(insp.lengths)
        lines.append(f"Tokens per example: min {min(insp.lengths)}, median {sorted(insp.lengths)[n // 2]}, "
                     f"max {max(insp.lengths)}; **{insp.over_cutoff}** over cutoff_len={insp.cutoff_len}")
    if c.bad:
        lines.append(f'<span class="ws-data-error">**{c.bad} unusable rows** ({c.empty} empty, {c.missing} missing a '
                     f'field, {c.invalid} malformed): training fails on them unless data.on_bad_rows is drop.</span>')
        lines += [f"- {html.escape(p)}" for p in c.problems[:8]]
    if c.ended_on_user:
        lines.append(f"{c.ended_on_user} conversations end on a user turn: that last turn is left out.")
    lines += [f"_{html.escape(n)}_" for n in insp.notes]
    return "\n\n".join(lines)


def _example(insp: preview.Inspection, cfg: C.RunConfig, row: int) -> tuple[str, int]:
    if insp.error or not insp.items:
        return "", 1
    it = preview.first_example(insp, max(0, row - 1))
    if it is None:
        return "<p>No usable row to show.</p>", 1
    tok, note = preview.tokenizer_for(cfg)
    if tok is None:
        return f"<p>{html.escape(note)}</p>", it.row.row
    head = f'<div class="ws-muted">Row {it.row.row}, rendered with template <b>{html.escape(cfg.data.template)}</b>' \
           "</div>"
    return head + preview.example_html(tok, it.example, cfg.data.cutoff_len), it.row.row


def show(name: Optional[str], cfg: C.RunConfig, page: int = 1, row: int = 1) -> tuple:
    """(summary, figure, example html, example row, table, page) for one dataset name."""
    import pandas as pd
    if not name:
        return ("Pick or upload a dataset to preview it.", histogram_figure([], cfg.data.cutoff_len, "no dataset"),
                "", 1, pd.DataFrame(columns=["row", "problem"]), 1)
    insp = preview.inspect(name, cfg)
    if insp.error:
        return (summary_markdown(insp), histogram_figure([], cfg.data.cutoff_len, "the file cannot be read"), "", 1,
                pd.DataFrame(columns=["row", "problem"]), 1)
    page = int(min(max(1, page or 1), preview.pages(insp, PAGE_SIZE)))
    example, shown_row = _example(insp, cfg, int(row or 1))
    return (summary_markdown(insp), histogram_figure(insp.lengths, cfg.data.cutoff_len), example, shown_row,
            preview.page(insp, page - 1, PAGE_SIZE), page)


def save_upload(path: str) -> str:
    """Keep an uploaded file under data/uploads/ (a safe name, never overwriting another upload)."""
    src = Path(path)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", src.stem).strip("._")[:80] or "upload"
    suffix = src.suffix.lower()
    if suffix not in SUFFIXES:  # the browser's file filter is advice; a script can post anything
        raise DataError(f"{src.name}: unsupported file type {suffix!r}; upload .json, .jsonl, .csv or .parquet")
    dest_dir = dataset_names.uploads_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / f"{stem}{suffix}"
    n = 1
    # Never write through a symlink planted in the uploads folder: a taken name (link or different
    # content) moves on to the next, and the copy lands under a temporary name renamed into place.
    while os.path.lexists(dest) and (dest.is_symlink() or dest.read_bytes() != src.read_bytes()):
        n += 1
        dest = dest_dir / f"{stem}-{n}{suffix}"
    tmp = dest_dir / f".{dest.name}.{os.getpid()}.tmp"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dest)
    return str(dest)


def build(state: gr.State) -> PreviewPanel:
    """The preview widgets, laid out where this is called, showing the run's first dataset; wire them with
    `wire`."""
    cfg = state.value.config
    first = (cfg.data.datasets or [None])[0]
    summary0, fig0, example0, row0, table0, page0 = show(first, cfg)
    with gr.Row(equal_height=True):
        picker = gr.Dropdown(label="Preview", choices=list(cfg.data.datasets), value=first,
                             allow_custom_value=True, scale=4, elem_id="ws-data-picker",
                             info="Which dataset to look at: its rows, token lengths and a rendered example.")
        refresh = gr.Button("Check again", scale=1, size="md", elem_id="ws-data-refresh")
        upload = gr.File(label="Upload a dataset (.json, .jsonl, .csv, .parquet)", file_types=list(SUFFIXES),
                         file_count="single", type="filepath", scale=3, height=110, elem_id="ws-data-upload")
    summary = gr.Markdown(summary0, elem_id="ws-data-summary")
    with gr.Row():
        with gr.Column(scale=5):
            histogram = gr.Plot(fig0, label="Token lengths", elem_id="ws-data-hist")
        with gr.Column(scale=6):
            example_row = gr.Number(label="Example row (the first usable row from here)", value=row0, precision=0,
                                    minimum=1)
            example = gr.HTML(example0, elem_id="ws-data-example")
    with gr.Row():
        page = gr.Number(label="Page", value=page0, precision=0, minimum=1, scale=1)
    table = gr.Dataframe(table0, label="Rows", interactive=False, wrap=True, elem_id="ws-data-table")
    return PreviewPanel(picker, refresh, upload, summary, histogram, example, example_row, table, page)


def refresh(keys: list[str], name, st, page, row, *values) -> tuple:
    """The preview of `name` under the config with the watched fields' current widget values applied."""
    from webui import fields
    cfg = st.config
    for key, v in zip(keys, values):
        try:
            cfg = C.replace(cfg, key, fields.to_config(key, v))
        except (TypeError, ValueError):
            pass
    return show(name, cfg, page, row)


def on_datasets(value, picked):
    """The preview picker offers the run's datasets, keeping the one picked while it is still there."""
    value = list(value or [])
    choice = picked if picked in value else (value[0] if value else None)
    return gr.update(choices=value, value=choice)


def on_upload(path, current):
    """Keep an uploaded file and add it to the run's datasets (an unreadable one is previewed, not added)."""
    if not path:
        return gr.update(), gr.update()
    try:
        kept = save_upload(path)
    except DataError as e:
        gr.Warning(str(e))
        return gr.update(), gr.update()
    current = list(current or [])
    try:
        preview.load(kept, C.RunConfig())
    except DataError:  # unreadable: shown in the preview with its error, not added to the run
        return gr.update(), gr.update(choices=[*current, kept], value=kept)
    value = current if kept in current else [*current, kept]
    choices = list(dict.fromkeys([*dataset_names.discovered(), *value]))
    return gr.update(choices=choices, value=value), gr.update(choices=value, value=kept)


def wire(panel: PreviewPanel, state: gr.State, datasets_widget: Optional[gr.components.Component] = None,
         watched: list = ()) -> None:
    """Recompute the preview when the picked dataset, the page or the example row changes, or a watched
    field widget (template, format, columns, cutoff) is edited: its value is applied to the config here, so
    the preview never waits for the form's own update of the state. An upload is added to
    `datasets_widget`'s value (its own change event puts it in the run config)."""
    outs = [panel.summary, panel.histogram, panel.example, panel.example_row, panel.table, panel.page]
    again = partial(refresh, [w.key for w in watched])
    comps = [w.component for w in watched]
    ins = [panel.picker, state, panel.page, panel.example_row, *comps]
    panel.picker.change(lambda n, st, p, r, *v: again(n, st, 1, 1, *v), ins, outs, show_progress="minimal")
    panel.refresh.click(again, ins, outs, show_progress="minimal")
    panel.page.submit(again, ins, outs, show_progress="hidden")
    panel.example_row.submit(again, ins, outs, show_progress="hidden")
    for c in comps:
        c.input(again, ins, outs, show_progress="hidden", trigger_mode="always_last")
    if datasets_widget is not None:
        datasets_widget.change(on_datasets, [datasets_widget, panel.picker], [panel.picker], show_progress="hidden")
        panel.upload.upload(on_upload, [panel.upload, datasets_widget], [datasets_widget, panel.picker],
                            show_progress="minimal")
