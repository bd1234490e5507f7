"""Compare runs, in the Train tab: pick runs (or a sweep), see the table of engine.runs.compare (best and
final eval loss, final train loss, tokens/s, peak memory, wall time, held-out scores, and the config fields
that differ as columns; sorted, the best run marked), their loss curves overlaid, and load the best run's
config into the tabs with one click.

Handlers are module-level functions of (panel, values...) that return updates keyed by the panel's
components; `wire` binds them with functools.partial.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Optional

import gradio as gr

from engine import config as C
from engine.runs import compare
from engine.runs import store as runs
from engine.runs import sweep
from webui import charts
from webui import state as S
from webui.live import RunFollower

SORT_CHOICES = [("the figure that picks the best", "")] + [(c.label, c.key) for c in compare.COLUMNS]


@dataclass
class ComparePanel:
    runs: gr.Dropdown
    sweep: gr.Dropdown
    sort: gr.Dropdown
    go: gr.Button
    table: gr.Dataframe
    summary: gr.Markdown
    plot: gr.Plot
    load_best: gr.Button
    best: gr.State               # the best run's name in the table shown


def build(st: S.RunState) -> ComparePanel:
    with gr.Accordion("Compare runs", open=False, elem_classes=["ws-compare-box"]):
        gr.Markdown("Pick runs, or a sweep, to compare their figures; the best run is marked **\\***. Click a "
                    "column's header to sort by it.")
        with gr.Row(equal_height=True):
            picked = gr.Dropdown(label="Runs to compare", choices=[], value=[], multiselect=True, scale=4,
                                 elem_classes=["ws-compare-runs"])
            sweep_pick = gr.Dropdown(label="Or a sweep", choices=[], value=None, scale=2,
                                     elem_classes=["ws-compare-sweep"])
            sort = gr.Dropdown(label="Sort by", choices=SORT_CHOICES, value="", scale=2)
            go = gr.Button("Compare", scale=1, size="md", elem_classes=["ws-compare-go"])
        summary = gr.Markdown(elem_classes=["ws-compare-summary"])
        table = gr.Dataframe(value=[], interactive=False, wrap=True, elem_classes=["ws-compare-table"])
        plot = gr.Plot(charts.loss_figure(None), show_label=False, elem_classes=["ws-compare-loss"])
        load_best = gr.Button("Load the best run's config into the tabs", elem_classes=["ws-compare-load-best"])
    return ComparePanel(runs=picked, sweep=sweep_pick, sort=sort, go=go, table=table, summary=summary, plot=plot,
                        load_best=load_best, best=gr.State(None))


# ---------------------------------------------------------------------------------------------
# Handlers
# ---------------------------------------------------------------------------------------------

def on_focus(cp: ComparePanel, st: S.RunState) -> dict:
    """Opening a list shows the runs and sweeps saved since the page was built (values left alone)."""
    saves = S.saves_path(st)
    return {cp.runs: gr.update(choices=[s.name for s in runs.list_runs(saves)]),
            cp.sweep: gr.update(choices=sweep.names(saves))}


def on_sweep(cp: ComparePanel, name: Optional[str], sort: str, st: S.RunState) -> dict:
    """A sweep picked: its runs (those started so far) are compared."""
    saves = S.saves_path(st)
    found, problems = compare.resolve(saves, [name]) if name else ([], [])
    names = [p.name for p in found]
    return {cp.runs: gr.update(choices=[s.name for s in runs.list_runs(saves)], value=names),
            **comparison(cp, saves, names, sort, problems)}


def on_compare(cp: ComparePanel, names: list[str], sort: str, st: S.RunState) -> dict:
    return comparison(cp, S.saves_path(st), names or [], sort)


def comparison(cp: ComparePanel, saves: Path, names: list[str], sort: str, problems: list[str] = ()) -> dict:
    paths = []
    for n in names:
        try:
            paths.append(runs.run_path(saves, n))
        except ValueError as e:
            problems = [*problems, str(e)]
    if not paths:
        note = "; ".join(problems) or "Pick two or more runs (or a sweep) to compare."
        return {cp.summary: note, cp.table: {"headers": ["run"], "data": []}, cp.plot: charts.loss_figure(None),
                cp.best: None}
    figures = [compare.measure(p) for p in paths]
    t = compare.table(figures, sort or None)
    overlays = []
    for p in paths:
        f = RunFollower.of(p)
        f.poll()
        overlays.append((p.name, f.series))
    note = (f"Best: **{t.best}** (lowest {compare.BY_KEY[t.by].label}); its config loads with the button below."
            if t.best else "No run has the figures to pick a best one yet.")
    return {cp.summary: note + "".join(f"\n- {p}" for p in problems), cp.best: t.best,
            cp.table: {"headers": t.headers, "data": t.rows}, cp.plot: charts.loss_figure(None, overlays)}


def on_load_best(cp: ComparePanel, form, message: gr.Markdown, best: Optional[str], st: S.RunState) -> dict:
    """The best run's settings into every tab (without its name: Start makes a new run)."""
    if not best:
        return {message: "Compare some runs first: the best of them is the one loaded."}
    try:
        run_dir = runs.run_path(S.saves_path(st), best)
        cfg = C.load(run_dir / "config.yaml", check_files=False)
    except (ValueError, C.ConfigError) as e:
        return {message: f"**Not loaded.** {e}"}
    new = S.with_config(st, C.replace(cfg, "output.run_name", ""), str(run_dir / "config.yaml"))
    return {**form.render(new), message: f"Loaded the settings of the best run, **{best}**, into the tabs."}


def wire(cp: ComparePanel, state: gr.State, form, message: gr.Markdown) -> None:
    shown = [cp.summary, cp.table, cp.plot, cp.best]
    common = dict(show_progress="hidden")
    cp.runs.focus(partial(on_focus, cp), [state], [cp.runs, cp.sweep], **common)
    cp.sweep.focus(partial(on_focus, cp), [state], [cp.runs, cp.sweep], **common)
    cp.sweep.input(partial(on_sweep, cp), [cp.sweep, cp.sort, state], [cp.runs, *shown], **common)
    cp.go.click(partial(on_compare, cp), [cp.runs, cp.sort, state], shown, **common)
    cp.sort.input(partial(on_compare, cp), [cp.runs, cp.sort, state], shown, **common)
    cp.load_best.click(partial(on_load_best, cp, form, message), [cp.best, state], [*form.outputs, message], **common)
