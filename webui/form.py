"""The config form: every field widget of every tab bound to the one shared run state.

A widget's `input` event (a user's edit, never a programmatic update) calls `state.set_field` and the
form answers with the new state plus what that change shows elsewhere: the YAML, the command line, the
problems Start would refuse, fields appearing or hiding, and values another field changed (choosing
qlora sets 4-bit). Loading a whole config (a preset, a past run) renders every widget from it.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import Any, Optional

import gradio as gr

from engine import config as C
from webui import fields, presets
from webui import state as S


@dataclass
class ConfigViews:
    """The current config shown three ways, plus the problems that would stop Start."""
    yaml: gr.Code
    cli: gr.Code
    problems: gr.Markdown


def problems_markdown(st: S.RunState) -> str:
    found = S.problems(st)
    warn = "".join(f"\n\n⚠️ **Warning:** {html.escape(w)}" for w in S.warnings(st))
    if not found:
        return warn.strip()
    items = "\n".join(f"- `{p.split(':', 1)[0]}`:{html.escape(p.split(':', 1)[1]) if ':' in p else ''}"
                      for p in found)
    return f"**Fix before starting:**\n{items}" + warn


@dataclass
class ConfigForm:
    widgets: list[fields.FieldWidget]
    views: ConfigViews
    state: gr.State
    extra_outputs: list[Any] = field(default_factory=list)
    # read-only views computed from the config (e.g. the memory estimate): .components() and .values(cfg)
    readouts: list[Any] = field(default_factory=list)

    @property
    def outputs(self) -> list[Any]:
        return [self.state, self.views.yaml, self.views.cli, self.views.problems,
                *(w.component for w in self.widgets), *(c for r in self.readouts for c in r.components())]

    def render(self, new: S.RunState, old: Optional[S.RunState] = None, edited: Optional[str] = None) -> dict:
        """Updates for everything the form shows. With `old`, only widgets whose value changed get a value."""
        out: dict[Any, Any] = {
            self.state: new,
            self.views.yaml: C.to_yaml(new.config),
            self.views.cli: presets.cli_command(new.config, new.source),
            self.views.problems: problems_markdown(new),
        }
        for r in self.readouts:
            out.update(r.values(new.config))
        for w in self.widgets:
            visible = fields.applies(w.key, new.config)
            value = C.get(new.config, w.key)
            if w.key == edited or (old is not None and C.get(old.config, w.key) == value):
                out[w.component] = gr.update(visible=visible)
            else:
                out[w.component] = gr.update(visible=visible, value=fields.to_widget(w.key, value))
        return out

    def wire(self) -> None:
        for w in self.widgets:
            # Gradio 6's multiselect sends no `input` when a typed value is added with Enter or the box is
            # cleared, so it listens to `change` (a programmatic update then re-sets the same value: harmless).
            multi = isinstance(w.component, gr.Dropdown) and w.component.multiselect
            event = w.component.change if multi else w.component.input
            event(self._handler(w.key), inputs=[w.component, self.state], outputs=self.outputs,
                  show_progress="hidden", concurrency_id="config", trigger_mode="always_last")

    def _handler(self, key: str):
        def on_edit(value: Any, st: S.RunState) -> dict:
            new = S.set_field(st, key, fields.to_config(key, value))
            return self.render(new, old=st, edited=key)
        return on_edit
