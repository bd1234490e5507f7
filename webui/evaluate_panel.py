"""Evaluate (under the Chat tab): score a run on a held-out file: loss and perplexity, then the tuned
and base answers beside the references with ROUGE-L. Runs in the evaluation worker (engine.evaluate);
results stay in saves/<run>/eval/."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

import gradio as gr

from engine.runs import eval_client
from engine.runs.paths import DATA_DIR
from webui import run_choices
from webui import state as S

HEADERS = ["Prompt", "Reference", "Tuned answer", "ROUGE-L tuned", "Base answer", "ROUGE-L base"]


def default_files() -> list[str]:
    return [str(p) for p in sorted(DATA_DIR.glob("*eval*.json*"))]


def summary_markdown(res: Optional[dict], folder: Optional[Path]) -> str:
    if not res:
        return ""
    s = res["summary"]
    return (f"**{s['rows']} prompts** from `{html.escape(str(s['dataset']))}` ({s['checkpoint']} weights) · "
            f"loss **{s['loss_tuned']}** (base {s['loss_base']}) · perplexity **{s['perplexity_tuned']}** "
            f"(base {s['perplexity_base']}) · ROUGE-L **{s['rouge_l_tuned']}** (base {s['rouge_l_base']})"
            + (f"\n\nSaved in `{folder}`" if folder else ""))


def table_rows(res: Optional[dict]) -> list[list]:
    if not res:
        return []
    return [[r["prompt"], r["reference"], r["tuned"], r["rouge_l_tuned"], r["base"], r["rouge_l_base"]]
            for r in res["rows"]]


def on_go(run_dir, ds, rows, mx):
    if not run_dir:
        return None, "**Pick a run first.**", gr.update(active=False), []
    try:
        out, _proc = eval_client.start_eval(run_dir, ds or "", max_new_tokens=int(mx or 64),
                                            max_rows=int(rows) if rows else None)
    except eval_client.EvalError as e:
        return None, f"**Cannot evaluate:** {html.escape(str(e))}", gr.update(active=False), []
    return str(out), "Evaluating: loading the model…", gr.update(active=True), []

def on_tick(out: Optional[str]):
    if not out:
        return gr.update(), gr.update(active=False), gr.update()
    p = eval_client.progress(Path(out))
    if p.status == "finished":
        res = eval_client.results(Path(out))
        return summary_markdown(res, Path(out)), gr.update(active=False), table_rows(res)
    if p.status == "failed":
        return f"**Evaluation failed:** {html.escape(p.error)}", gr.update(active=False), gr.update()
    return f"Evaluating… {100 * p.progress:.0f}%", gr.update(), gr.update()

def on_run(run_dir):
    past = eval_client.past_evals(run_dir) if run_dir else []
    if not past:
        return "", []
    res = eval_client.results(past[0])
    return "Last evaluation: " + summary_markdown(res, past[0]), table_rows(res)


def build(state: gr.State) -> None:
    st: S.RunState = state.value
    with gr.Accordion("Evaluate a run on held-out prompts", open=False, elem_classes=["ws-eval"]):
        runs = run_choices.runs_with_weights(S.saves_path(st))
        with gr.Row(equal_height=True):
            run = gr.Dropdown(label="Run", choices=runs, value=runs[0][1] if runs else None, scale=3,
                              elem_classes=["ws-eval-run"])
            files = default_files()
            dataset = gr.Dropdown(label="Held-out file", choices=files, value=files[0] if files else None,
                                  allow_custom_value=True, scale=3,
                                  info="a .json/.jsonl/.csv file (alpaca, sharegpt or messages) or a dataset name")
            max_rows = gr.Number(label="At most rows", value=12, precision=0, minimum=1, scale=1)
            max_new = gr.Number(label="Max new tokens", value=64, precision=0, minimum=1, scale=1)
        with gr.Row():
            go = gr.Button("Evaluate", variant="primary", elem_classes=["ws-eval-go"])
        status = gr.Markdown(elem_classes=["ws-eval-status"])
        table = gr.Dataframe(headers=HEADERS, value=[], interactive=False, wrap=True, elem_classes=["ws-eval-table"])
        timer = gr.Timer(1.0, active=False)
        folder = gr.State(None)

    run.focus(run_choices.on_focus, [state], [run], show_progress="hidden")
    run.change(on_run, [run], [status, table], show_progress="hidden")
    go.click(on_go, [run, dataset, max_rows, max_new], [folder, status, timer, table])
    timer.tick(on_tick, [folder], [status, timer, table], show_progress="hidden")
