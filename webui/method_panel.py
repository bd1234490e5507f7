"""The Method tab's read-outs for the chosen model: trainable parameters and inference cost of every
method (a small table), the model's real module names for LoRA / IA3 targets, and the memory estimate
with its warning. Also used by the Hyperparameters tab (the estimate). Values come from
engine.preflight.method_table, which reads the model's files without torch."""
from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from engine import config as C
from engine.preflight import method_table as method_info


@dataclass
class MethodViews:
    estimate: gr.Markdown
    table: gr.Dataframe | None = None
    modules: gr.Markdown | None = None

    def components(self) -> list:
        return [c for c in (self.estimate, self.table, self.modules) if c is not None]

    def values(self, cfg: C.RunConfig) -> dict:
        """Updates for every read-out, from the config being edited."""
        out = {self.estimate: method_info.estimate_markdown(cfg)}
        if self.table is not None:
            out[self.table] = gr.update(value=method_info.params_table(cfg))
        if self.modules is not None:
            out[self.modules] = modules_markdown(cfg)
        return out


def modules_markdown(cfg: C.RunConfig) -> str:
    names = method_info.target_choices(cfg)[1:]
    if not names:
        return "Linear layers of this model: shown once its files are on this machine."
    return ("Linear layers of this model (LoRA / IA3 targets, comma-separated, or `all`): "
            + ", ".join(f"`{n}`" for n in names))


def build(cfg: C.RunConfig, table: bool = True) -> MethodViews:
    estimate = gr.Markdown(method_info.estimate_markdown(cfg), elem_classes=["ws-estimate"])
    if not table:
        return MethodViews(estimate)
    modules = gr.Markdown(modules_markdown(cfg), elem_classes=["ws-modules"])
    df = gr.Dataframe(value=method_info.params_table(cfg), headers=method_info.TABLE_HEADERS,
                      label="Methods on this model: trainable parameters and inference cost", interactive=False,
                      wrap=True, elem_classes=["ws-method-table"])
    return MethodViews(estimate, df, modules)
