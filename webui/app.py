"""The workbench page: a model picker and presets above six tabs, all on one shared run state.

`launch()` serves it on 127.0.0.1 unless told otherwise; `build_demo()` returns the gr.Blocks.
"""
from __future__ import annotations

import html
import inspect
import ipaddress
import os
import sys
from functools import partial
from typing import Optional

import gradio as gr

from engine import config as C
from engine.runs.paths import LOOPBACK
from webui import chat, dataset, export, fields, hyperparams, method, presets, train
from webui import state as S
from webui.form import ConfigForm
from webui.live import Watch
from webui.sessions import Workbench


CSS = """
.gradio-container { max-width: 1360px !important; margin: 0 auto; }
.ws-title h1 { margin: 0; font-size: 1.6rem; }
.ws-title p { margin: 0.1rem 0 0; color: #6b7280; }
.ws-progress { padding: 10px 12px; border: 1px solid #e5e7eb; border-radius: 8px; background: #fafafa; }
.ws-progress-line { display: flex; gap: 18px; align-items: center; flex-wrap: wrap; font-size: 0.95rem; }
.ws-badge { color: white; padding: 2px 10px; border-radius: 999px; font-size: 0.85rem; font-weight: 600; }
.ws-bar { margin-top: 8px; height: 8px; border-radius: 4px; background: #e5e7eb; overflow: hidden; }
.ws-bar-fill { height: 100%; transition: width 0.5s; }
.ws-muted { color: #6b7280; }
.ws-note { margin-top: 6px; color: #92400e; font-size: 0.9rem; }
.prose.ws-failure { border-left: 4px solid #dc2626; padding-left: 10px; }
.ws-failure:empty, .ws-problems:empty, .ws-message:empty { display: none; }
.ws-log textarea { font-family: ui-monospace, monospace; font-size: 12px; }
.ws-placeholder { padding: 24px; color: #374151; }
.ws-report { padding: 10px 12px; border: 1px solid #e5e7eb; border-radius: 8px; }
.ws-report table { width: 100%; border-collapse: collapse; margin: 6px 0; font-size: 0.9rem; }
.ws-report td, .ws-report th { border-bottom: 1px solid #eee; padding: 4px 6px; text-align: left; vertical-align: top; }
.ws-report td.hit { background: #e6fcf5; }
.ws-report-box:empty { display: none; }
"""


def default_saves() -> str:
    """Where this app keeps runs: WHETSTONE_SAVES, else the config's default (saves/ beside the app)."""
    return os.environ.get("WHETSTONE_SAVES") or C.OutputConfig().saves_dir


def build_demo(saves: Optional[str] = None) -> gr.Blocks:
    saves = saves or default_saves()
    first = S.initial(saves)
    with Workbench(title="Whetstone") as demo:
        state = gr.State(first)
        watch = gr.State(Watch())
        with gr.Row(equal_height=True):
            gr.Markdown("# Whetstone\nFine-tune a language model: pick a model and data, choose a method, "
                        "press Start, watch it learn.", elem_classes=["ws-title"])
        with gr.Row(equal_height=True):
            with gr.Column(scale=4):
                model = fields.build(["model.name_or_path"], first.config)
            with gr.Column(scale=2, min_width=260):
                preset = gr.Dropdown(label="Preset", choices=presets.names(),
                                     value=S.DEFAULT_PRESET if S.DEFAULT_PRESET in presets.names() else None,
                                     info="A ready-made config: loads into every tab.", elem_classes=["ws-preset"])
                load_preset = gr.Button("Load preset", size="md")
                load_file = gr.UploadButton("Load a YAML file (Whetstone or LLaMA-Factory)", file_types=[".yaml", ".yml"],
                                            size="md", elem_classes=["ws-load-file"])
        with gr.Tabs() as tabs:
            with gr.Tab("Dataset"):
                data_fields = dataset.build(state)
            with gr.Tab("Method"):
                method_fields, method_views = method.build(state)
            with gr.Tab("Hyperparameters"):
                hp_fields, hp_views, hp_steps = hyperparams.build(state)
            with gr.Tab("Train", id=train.TAB_ID):
                panel = train.build(state)
            with gr.Tab("Chat") as chat_tab:
                chat_fields = chat.build(state, chat_tab)
            with gr.Tab("Export") as export_tab:
                export_fields = export.build(state, export_tab)
        form = ConfigForm(widgets=[*model, *data_fields, *method_fields, *hp_fields, *panel.fields, *chat_fields,
                                   *export_fields], views=panel.views, state=state,
                         readouts=[method_views, hp_views, hp_steps, panel.schedule])
        form.wire()
        train.wire(panel, form, watch)

        load_preset.click(partial(on_load_preset, panel), [preset, state], [*form.outputs, panel.message],
                          show_progress="hidden")
        load_file.upload(partial(on_load_file, panel), [load_file, state], [*form.outputs, panel.message],
                         show_progress="hidden")
        demo.load(partial(train.on_page_load, panel, saves, tabs), [state, watch],
                  train.page_load_outputs(panel, tabs), show_progress="hidden")
        demo.load(lambda: gr.update(choices=presets.names()), None, [preset], show_progress="hidden")
        demo.forget_closed_pages()  # a closed or reloaded page leaves nothing behind (webui/sessions.py)
    return demo


def on_load_preset(panel: train.TrainPanel, name: Optional[str], st: S.RunState) -> dict:
    """Load a preset into every tab."""
    if not name:
        return {panel.message: "Pick a preset first."}
    try:
        cfg = presets.load(name)
    except C.ConfigError as e:
        return {panel.message: "**Preset not loaded:** " + "; ".join(e.problems)}
    new = S.with_config(st, cfg, str(presets.path_of(name)))
    return {**panel.form.render(new), panel.message: f"Loaded preset **{name}** into the tabs."}


def on_load_file(panel: train.TrainPanel, file, st: S.RunState) -> dict:
    """Load a config file into every tab: a Whetstone YAML, or a LLaMA-Factory one converted (what was not mapped
    is said; keys that change training and have no equivalent stop it)."""
    path = file if isinstance(file, str) else getattr(file, "name", None)
    if not path:
        return {panel.message: "Pick a YAML file first."}
    name = os.path.basename(path)
    try:
        cfg, notes = presets.from_file(path)
    except C.ConfigError as e:
        return {panel.message: f"**{html.escape(name)} not loaded:**\n" + "\n".join(
            f"- {html.escape(p)}" for p in e.problems)}
    new = S.with_config(st, cfg, None)
    said = "".join(f"\n- {html.escape(n)}" for n in notes)
    return {**panel.form.render(new), panel.message: f"Loaded **{html.escape(name)}** into the tabs.{said}"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def launch(host: str = "127.0.0.1", port: int = 7860, auth: Optional[tuple[str, str]] = None,
           insecure: bool = False, saves: Optional[str] = None, **kwargs) -> None:
    """Serve the workbench. Binding beyond this machine needs a password (auth) or insecure=True."""
    if not _is_loopback(host) and auth is None and not insecure:
        raise SystemExit(f"Refusing to serve on {host} without a password: anyone who can reach it could run code "
                         "as you. Pass auth=(user, password), or insecure=True if the network is yours alone.")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from engine.runs.paths import saves_dir
    from engine.runs.queue_runner import keep_running
    keep_running(saves_dir(saves or default_saves()))  # queued runs go on (a runner restarted should one die)
    demo = build_demo(saves)
    demo.queue(default_concurrency_limit=4)
    args = dict(server_name=host, server_port=port, auth=auth, css=CSS, theme=gr.themes.Soft(), show_error=True,
                footer_links=[], **kwargs)
    try:
        demo.launch(**args)
    except ValueError as e:
        # Gradio asks its own freshly started server for the page once, with 3 s to answer, and exits when it
        # does not ("When localhost is not accessible..."): on a busy machine the answer takes longer. The
        # server itself is fine: start it again without that check (Gradio's `_frontend` flag skips only it).
        if "localhost is not accessible" not in str(e) \
                or "_frontend" not in inspect.signature(demo.launch).parameters:
            raise
        print("The page took over 3 s to answer its first request (a busy machine?); starting again without "
              "Gradio's localhost check.", file=sys.stderr, flush=True)
        demo.close()
        demo.launch(**args, _frontend=False)


if __name__ == "__main__":
    launch()
