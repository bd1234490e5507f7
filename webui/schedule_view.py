"""How long the run will train, shown before Start (Hyperparameters and Train tabs): the epochs, optimizer
steps and warm-up that engine.preflight.schedule resolves from the datasets' rows, and which setting decided
them. A form read-out (components / values), recomputed as the config is edited."""
from __future__ import annotations

import html
from dataclasses import dataclass

import gradio as gr

from engine import config as C
from engine.preflight import schedule


def markdown(cfg: C.RunConfig) -> str:
    try:
        text = schedule.plan(cfg).describe()
    except Exception as e:  # noqa: BLE001  (a read-out never breaks the form; Start reports the real problem)
        text = f"schedule: resolved when the run starts ({type(e).__name__}: {e})"
    head, _, rest = text.partition(": ")
    return f"**Training length** (resolved from the data): {html.escape(rest or head)}"


@dataclass
class ScheduleView:
    text: gr.Markdown

    def components(self) -> list:
        return [self.text]

    def values(self, cfg: C.RunConfig) -> dict:
        return {self.text: markdown(cfg)}


def build(cfg: C.RunConfig) -> ScheduleView:
    return ScheduleView(gr.Markdown(markdown(cfg), elem_classes=["ws-schedule"]))
