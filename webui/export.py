"""Export tab: merge a run's adapter into its base and write a standard folder (sharded safetensors at a
chosen dtype, tokenizer and chat template, stop tokens in generation_config.json, a model card and an
Ollama Modelfile), optionally GGUF files, or the adapter alone. The export worker does the work in
its own process (engine.export); this tab starts it, shows its progress and checks, and can
stop it. One export at a time per app: a refreshed page finds the one going."""
from __future__ import annotations

import html
import typing
from typing import Optional

import gradio as gr

from engine.runs.export_client import ExportJob, start_export
from engine.config.export import LLAMA_CPP_INSTALL, ExportConfig, ExportConfigError, GGUFType, llama_cpp_installed
from webui import fields, run_choices
from webui import state as S


class ExportHolder:
    job: Optional[ExportJob] = None


CURRENT = ExportHolder()


def progress_html(job: Optional[ExportJob]) -> str:
    if job is None:
        return "<div class='ws-progress ws-muted'>No export yet.</div>"
    pct = int(100 * (1.0 if job.status == "finished" else job.progress))
    color = {"finished": "#16a34a", "failed": "#dc2626"}.get(job.status, "#2563eb")
    return (f"<div class='ws-progress'><div class='ws-progress-line'><span class='ws-badge' "
            f"style='background:{color}'>{html.escape(job.status)}</span><span>{pct}%</span>"
            f"<span class='ws-muted'>{html.escape(str(job.out))}</span></div>"
            f"<div class='ws-bar'><div class='ws-bar-fill' style='width:{pct}%;background:{color}'></div></div></div>")


def report_markdown(job: Optional[ExportJob]) -> str:
    if job is None:
        return ""
    lines = []
    for c in job.checks:
        if c.get("what") == "merge":
            lines.append(f"- Merge check: merged logits vs base + adapter, max |diff| {c['max_abs_diff']:.2e} "
                         f"(tolerance {c['tolerance']:.0e}, fp32)")
        elif c.get("what") == "llama.cpp":
            lines.append(f"- {html.escape(c['file'])} ({c['size_bytes'] / 2**20:.1f} MiB) in llama.cpp: " + (
                f"answered *{html.escape(c['answer'][:80])}* ({c['tokens']} tokens, {c['tokens_per_s']} tokens/s, "
                f"stopped by {'its end-of-turn token' if c['finish_reason'] == 'stop' else c['finish_reason']})"
                if c.get("ok") else f"**failed**: {html.escape(c.get('reason', ''))}"))
        elif c.get("what") == "written":
            lines.append(f"- Written {c['dtype']} folder loaded back: max |diff| {c['max_abs_diff']:.3g}, greedy "
                         f"agreement {100 * c['top1_agreement']:.1f}% (required {100 * c['top1_required']:.0f}%)")
    if job.status == "finished":
        out = job.out
        files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
        lines.append(f"\n**Exported to** `{out}`:\n" + "\n".join(f"- `{f}`" for f in files))
    elif job.status == "failed":
        lines.append(f"\n**Export failed:** {html.escape(job.reason)} Nothing complete-looking was left behind.")
    return "\n".join(lines)


def on_go(run_dir, ck, k, dt, sh, gg, o, ow):
    """Start the export worker on what the user picked; (message, progress, report)."""
    if CURRENT.job is not None and CURRENT.job.running:
        return "**An export is already going;** wait for it or press Stop.", gr.update(), gr.update()
    cfg = ExportConfig(run_dir=run_dir or "", checkpoint=run_choices.checkpoint_value(ck), kind=k,
                       out_dir=(o or "").strip(), dtype=dt, max_shard_size=(sh or "").strip(),
                       gguf=list(gg or []) if k == "merged" else [], overwrite=bool(ow))
    try:
        CURRENT.job = start_export(cfg)
    except ExportConfigError as e:
        return "**Cannot export:**\n" + "\n".join(f"- {html.escape(p)}" for p in e.problems), gr.update(), \
            gr.update()
    return "", progress_html(CURRENT.job), ""

def on_tick():
    """The export's progress and checks, when anything new happened."""
    job = CURRENT.job
    if job is None:
        return gr.update(), gr.update()
    was = job.status
    job.poll()
    if not job.running and was in ("finished", "failed") and job.status == was:
        return gr.update(), gr.update()  # nothing new since the last tick
    return progress_html(job), report_markdown(job)

def on_stop():
    """Stop the export: its worker removes its temporary folder."""
    job = CURRENT.job
    if job is None or not job.running:
        return "Nothing to stop."
    job.stop()
    job.wait(5)
    return "Export stopped; its temporary folder was removed."


def on_tab(s: S.RunState, picked: Optional[dict]):
    """Opening the tab offers the run just trained (unless the user picked another)."""
    return run_choices.refreshed(S.saves_path(s), picked, s.run_dir)


def gguf_info() -> str:
    """What the GGUF boxes mean here, and how to get the K-quants when llama.cpp is missing."""
    text = ("llama-architecture models; q4_k_m (Ollama's usual default), q5_k_m and q6_k are made by llama.cpp's "
            "quantizer, and every file is run in llama.cpp before the export is done")
    return text if llama_cpp_installed() else text + f". llama.cpp is not installed here: {LLAMA_CPP_INSTALL}"


def on_kind(k: str):
    return gr.update(interactive=k == "merged"), gr.update(interactive=k == "merged")


def build(state: gr.State, tab: gr.Tab) -> list[fields.FieldWidget]:
    st: S.RunState = state.value
    gr.Markdown("### Export\nMerge a run into a standalone model folder (loads with plain `transformers`), "
                "or export the adapter alone. The export is checked before it is called done, and written "
                "to a temporary folder that is renamed only at the end.")
    runs = run_choices.runs_with_weights(S.saves_path(st))
    first = runs[0][1] if runs else None
    cps = run_choices.checkpoint_choices(first)
    with gr.Row(equal_height=True):
        run = gr.Dropdown(label="Run", choices=runs, value=first, scale=3, elem_classes=["ws-export-run"])
        ckpt = gr.Dropdown(label="Weights", choices=cps, value=cps[0] if cps else None, scale=2,
                           elem_classes=["ws-export-ckpt"])
        kind = gr.Radio(["merged", "adapter"], value="merged", label="What", scale=2,
                        info="merged: a full model; adapter: the trained adapter or prompts only",
                        elem_classes=["ws-export-kind"])
    with gr.Row(equal_height=True):
        dtype = gr.Radio(["fp16", "bf16", "fp32"], value="fp16", label="Precision",
                         info="fp16 runs everywhere; bf16 keeps range; fp32 is exact", elem_classes=["ws-export-dtype"])
        shard = gr.Textbox(label="Max shard size", value="2GB", info="e.g. 500MB, 2GB", scale=1)
        ggufs = gr.CheckboxGroup(list(typing.get_args(GGUFType)), value=[], label="Also GGUF (llama.cpp / Ollama)",
                                 info=gguf_info(), elem_classes=["ws-export-gguf"])
    with gr.Row(equal_height=True):
        out = gr.Textbox(label="Output folder", placeholder="empty = <run>/merged (or <run>/adapter-export)", scale=4)
        overwrite = gr.Checkbox(label="Replace an existing export", value=False, scale=1)
    with gr.Row():
        go = gr.Button("Export", variant="primary", elem_classes=["ws-export-go"])
        stop = gr.Button("Stop export", variant="stop", elem_classes=["ws-export-stop"])
    message = gr.Markdown(elem_classes=["ws-message"])
    prog = gr.HTML(progress_html(CURRENT.job), elem_classes=["ws-export-progress"])
    report = gr.Markdown(report_markdown(CURRENT.job), elem_classes=["ws-export-report"])
    timer = gr.Timer(1.0)
    picked = gr.State({})  # the run and weights this user chose (a value the page showed is not a choice)

    run.focus(run_choices.on_focus, [state], [run], show_progress="hidden")
    tab.select(on_tab, [state, picked], [run, ckpt], show_progress="hidden")
    run.input(run_choices.on_pick_run, [run], [ckpt, picked], show_progress="hidden")
    ckpt.input(run_choices.on_pick_weights, [run, ckpt], [picked], show_progress="hidden")
    kind.change(on_kind, [kind], [dtype, ggufs], show_progress="hidden")
    go.click(on_go, [run, ckpt, kind, dtype, shard, ggufs, out, overwrite], [message, prog, report])
    stop.click(on_stop, None, [message])
    timer.tick(on_tick, None, [prog, report], show_progress="hidden")
    return []
