"""Queue a sweep from the Hyperparameters tab: a list of values for one or more fields, one queued run per
combination, on the settings in the tabs; the same grid, checks and run names as `python app.py sweep`
(engine.config.grid, engine.runs.sweep). The runs appear in the Train tab's queue, and the sweep in its
comparison.

Handlers are module-level functions of (panel, values...) that return updates keyed by the panel's
components; `build` wires them with functools.partial.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import gradio as gr

from engine import config as C
from engine.config import grid as G
from engine.runs import launcher
from engine.runs import sweep
from webui import state as S


@dataclass
class SweepPanel:
    grid: gr.Textbox
    name: gr.Textbox
    many: gr.Checkbox
    go: gr.Button
    message: gr.Markdown


def specs(text: str) -> list[str]:
    return [line.strip() for line in str(text or "").splitlines() if line.strip()]


def build(state: gr.State) -> SweepPanel:
    with gr.Accordion("Sweep: one queued run per combination of values", open=False, elem_classes=["ws-sweep"]):
        grid = gr.Textbox(label="Values to try", lines=3, elem_classes=["ws-sweep-grid"],
                          placeholder="train.learning_rate=1e-4,3e-4,1e-3\nmethod.lora.rank=8,16",
                          info="One field a line: its name, '=', its values separated by commas (written as in "
                               "--set). Every other setting comes from the tabs.")
        with gr.Row(equal_height=True):
            name = gr.Textbox(label="Sweep name", placeholder="empty = sweep-<date>-<time>", scale=3)
            many = gr.Checkbox(label=f"Allow more than {G.MAX_RUNS} runs", value=False, scale=1)
            go = gr.Button("Queue sweep", variant="primary", scale=1, elem_classes=["ws-sweep-go"])
        message = gr.Markdown(elem_classes=["ws-sweep-message"])
    p = SweepPanel(grid=grid, name=name, many=many, go=go, message=message)
    grid.change(partial(on_preview, p), [grid], [message], show_progress="hidden", trigger_mode="always_last")
    go.click(partial(on_queue_sweep, p), [grid, name, many, state], [message], show_progress="hidden",
             concurrency_id="launch")
    return p


def on_preview(p: SweepPanel, text: str) -> dict:
    """How many runs the grid makes, or what is wrong with it, as it is typed."""
    if not specs(text):
        return {p.message: ""}
    axes, problems = G.parse(specs(text))
    if problems:
        return {p.message: "\n".join(f"- {x}" for x in problems)}
    return {p.message: f"{G.size(axes)} run{'s' if G.size(axes) != 1 else ''} "
                       f"({' x '.join(str(len(a.values)) for a in axes)})."}


def on_queue_sweep(p: SweepPanel, text: str, name: str, many: bool, st: S.RunState) -> dict:
    base = C.to_dict(C.replace(st.config, "output.run_name", ""))
    try:
        sweep_name, runs = sweep.queue_sweep(S.saves_path(st), base, specs(text), name or "", confirmed=many)
    except C.ConfigError as e:
        return {p.message: "**Nothing was queued.**\n" + "\n".join(f"- {x}" for x in e.problems)}
    except (launcher.LaunchError, ValueError) as e:
        return {p.message: f"**Nothing was queued.** {e}"}
    shown = "".join(f"\n- {r}" for r in runs[:8]) + (f"\n- ... and {len(runs) - 8} more" if len(runs) > 8 else "")
    return {p.message: f"Queued sweep **{sweep_name}**: {len(runs)} runs, one after another (the Train tab's "
                       f"queue lists them; **Compare runs** there shows the sweep as it goes).{shown}"}
