"""The run queue in the Train tab: Queue (beside Start) adds the settings in the tabs as a waiting run; the
table lists the waiting runs (name, model, method, the fields that differ from the first, state), with
cancel and move up / down, and the GPUs queued runs may share. The queue lives in saves/.queue
(engine.runs.queue) and its own runner process starts the runs (engine.runs.queue_runner), so nothing
here has to stay open for the queue to go on.

Handlers are module-level functions of (panel, values...) that return updates keyed by the panel's
components; `wire` binds them with functools.partial.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from engine import config as C
from engine.config import queue as QS
from engine.runs import launcher
from engine.runs import queue as Q
from engine.runs.queue_runner import ensure_runner, live_runs
from webui import presets, runs_table
from webui import state as S

HEADERS = ["#", "run", "model", "method", "differs from the first", "state"]
TICK_SECONDS = 2.0


@dataclass
class QueuePanel:
    button: gr.Button            # Queue, beside Start
    box: gr.Accordion
    table: gr.Dataframe
    entry: gr.Dropdown
    cancel: gr.Button
    up: gr.Button
    down: gr.Button
    gpus: gr.Textbox
    note: gr.Markdown
    seen: gr.State               # the queue file's signature when last drawn
    timer: gr.Timer


def button() -> gr.Button:
    return gr.Button("Queue", variant="secondary", elem_classes=["ws-queue"])


def build(queue_button: gr.Button, st: S.RunState) -> QueuePanel:
    saves = S.saves_path(st)
    rows, names = table_rows(saves)
    with gr.Accordion(f"Queue ({len(names)} waiting)", open=bool(names), elem_classes=["ws-queue-box"]) as box:
        table = gr.Dataframe(headers=HEADERS, value=rows, interactive=False, wrap=True,
                             elem_classes=["ws-queue-table"])
        with gr.Row(equal_height=True):
            entry = gr.Dropdown(label="Queued run", choices=names, value=names[0] if names else None, scale=3,
                                elem_classes=["ws-queue-entry"])
            up = gr.Button("Move up", scale=1, size="md")
            down = gr.Button("Move down", scale=1, size="md")
            cancel = gr.Button("Cancel", variant="stop", scale=1, size="md", elem_classes=["ws-queue-cancel"])
        meta = QS.QueueSettings.__dataclass_fields__["gpus"].metadata
        gpus = gr.Textbox(label=meta["label"], info=meta["help"] + " Type them as 0,1,2,3.",
                          value=", ".join(map(str, QS.load(Q.folder(saves)).gpus)), placeholder="one at a time")
        note = gr.Markdown(elem_classes=["ws-queue-note"])
    return QueuePanel(button=queue_button, box=box, table=table, entry=entry, cancel=cancel, up=up, down=down,
                      gpus=gpus, note=note, seen=gr.State(Q.signature(saves)), timer=gr.Timer(TICK_SECONDS))


# ---------------------------------------------------------------------------------------------
# What the panel shows
# ---------------------------------------------------------------------------------------------

def _differs(cfg: C.RunConfig, first: C.RunConfig) -> str:
    return ", ".join(a for a in presets.set_args(cfg, first) if not a.startswith("output."))


def _state(e: Q.Entry, i: int, running: bool) -> str:
    if e.error:
        return "cannot start: " + e.error.splitlines()[-1].strip(" -")
    if e.claimed is not None:
        return "starting"
    return "next" if i == 0 and not running else "waiting"


def table_rows(saves: Path) -> tuple[list[list], list[str]]:
    """(rows, names) of the waiting runs, in the order they start."""
    try:
        entries = Q.read(saves).entries
    except Q.QueueError as e:
        return [["", str(e), "", "", "", ""]], []
    running = bool(live_runs(saves)) if entries else False
    rows, first = [], None
    for i, e in enumerate(entries):
        try:
            cfg = e.run_config
        except C.ConfigError as err:
            rows.append([i + 1, e.name, "", "", "", f"cannot start: {err.problems[0]}"])
            continue
        first = first or cfg
        method = cfg.method.finetuning + ("" if cfg.method.stage == "sft" else f" · {cfg.method.stage}")
        rows.append([i + 1, e.name, runs_table.short_model(cfg.model.name_or_path), method,
                     _differs(cfg, first) if cfg is not first else "", _state(e, i, running)])
    return rows, [e.name for e in entries]


def table_updates(qp: QueuePanel, saves: Path, keep: Optional[str] = None) -> dict:
    rows, names = table_rows(saves)
    value = keep if keep in names else (names[0] if names else None)
    return {qp.table: rows, qp.entry: gr.update(choices=names, value=value), qp.seen: Q.signature(saves),
            qp.box: gr.update(label=f"Queue ({len(names)} waiting)", **({"open": True} if names else {}))}


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

def on_queue(qp: QueuePanel, message: gr.Markdown, st: S.RunState) -> dict:
    """Queue the settings in the tabs: checked now as Start checks them, started when their turn comes."""
    saves = S.saves_path(st)
    cfg = C.replace(st.config, "output.run_name", st.config.output.run_name.strip())
    try:
        (name,) = Q.add(saves, [cfg])
    except C.ConfigError as e:
        return {message: "**Not queued: the settings have problems.**\n" + "\n".join(f"- {x}" for x in e.problems)}
    except launcher.DataProblems as e:
        return {message: "**Not queued.** The data has problems; fix them (the Dataset tab shows each row):\n"
                         + "\n".join(f"- {x}" for x in e.problems)}
    except Q.QueueError as e:
        return {message: f"**Not queued.** {e}"}
    ensure_runner(saves)
    ahead = len(Q.read(saves).entries) - 1 + len(live_runs(saves))
    when = ("It starts in a moment." if not ahead else
            f"It starts by itself after the {ahead} run{'s' if ahead > 1 else ''} ahead of it, with this page closed too.")
    return {message: f"Queued **{name}**. {when}", **table_updates(qp, saves, keep=name)}


def on_cancel(qp: QueuePanel, name: Optional[str], st: S.RunState) -> dict:
    saves = S.saves_path(st)
    if not name:
        return {qp.note: "Pick a queued run first."}
    try:
        note = Q.cancel(saves, name)
    except Q.QueueError as e:
        note = f"**Not cancelled.** {e}"
    return {qp.note: note, **table_updates(qp, saves)}


def on_move(qp: QueuePanel, by: int, name: Optional[str], st: S.RunState) -> dict:
    saves = S.saves_path(st)
    if not name:
        return {qp.note: "Pick a queued run first."}
    try:
        Q.move(saves, name, by)
        note = ""
    except Q.QueueError as e:
        note = f"**Not moved.** {e}"
    return {qp.note: note, **table_updates(qp, saves, keep=name)}


def on_gpus(qp: QueuePanel, text: str, st: S.RunState) -> dict:
    saves = S.saves_path(st)
    try:
        settings = QS.parse_gpus(text)
    except QS.QueueSettingsError as e:
        return {qp.note: "**Not saved.** " + "; ".join(e.problems)}
    QS.save(Q.folder(saves), settings)
    ensure_runner(saves)
    return {qp.note: (f"Queued runs may now use GPUs {', '.join(map(str, settings.gpus))}, one run per GPU."
                      if len(settings.gpus) > 1 else "Queued runs go one at a time.")}


def on_tick(qp: QueuePanel, seen: Any, name: Optional[str], st: S.RunState) -> dict:
    """Redraw when the queue changed (a run started, another browser or the CLI queued or cancelled)."""
    saves = S.saves_path(st)
    now = Q.signature(saves)
    if list(now) == list(seen or ()):
        return {qp.seen: gr.skip()}  # not {}: Gradio reads an empty dict as one value for every output
    return table_updates(qp, saves, keep=name)


def wire(qp: QueuePanel, state: gr.State, message: gr.Markdown) -> None:
    shown = [qp.table, qp.entry, qp.seen, qp.box]
    common = dict(show_progress="hidden")
    qp.button.click(partial(on_queue, qp, message), [state], [message, *shown], concurrency_id="launch", **common)
    qp.cancel.click(partial(on_cancel, qp), [qp.entry, state], [qp.note, *shown], **common)
    qp.up.click(partial(on_move, qp, -1), [qp.entry, state], [qp.note, *shown], **common)
    qp.down.click(partial(on_move, qp, 1), [qp.entry, state], [qp.note, *shown], **common)
    qp.gpus.submit(partial(on_gpus, qp), [qp.gpus, state], [qp.note], **common)
    qp.gpus.blur(partial(on_gpus, qp), [qp.gpus, state], [qp.note], **common)
    qp.timer.tick(partial(on_tick, qp), [qp.seen, qp.entry, state], shown, concurrency_limit=None, **common)
