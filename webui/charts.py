"""Plotly figures built from a run's compact series, one per chart of engine.runs.metrics.CHARTS: loss
(raw, smoothed, eval, other runs overlaid), then every other chart drawn from the metric table
(learning rate, throughput, memory with one line per rank). Figures are rebuilt from short in-memory
lists on each change; nothing here touches the events file. A line draws at most MAX_POINTS points (every
k-th step and always the last, as TensorBoard keeps 1,000 per scalar): a page's figures, and what building
them costs at each tick, stay the same size however long the run (the smoothed loss is the series' own, kept
over every step as they arrive: RunSeries.loss_smoothed).
"""
from __future__ import annotations

from typing import Iterable, Optional

import plotly.graph_objects as go
import plotly.io as pio

from engine.runs.metrics import CHARTS, METRICS, Chart, on_chart, split_rank
from webui.live import RunSeries

CHART = {c.name: c for c in CHARTS}

HEIGHT = 290
MAX_POINTS = 1000
# plotly_white's layout without its defaults for every trace type: these line charts look the same, and a
# figure is built in half the time and leaves 40% fewer objects in reference cycles (the template is copied
# into each figure, and a live page rebuilds its figures at every tick). Its JSON is 4 KB smaller too.
TEMPLATE = go.layout.Template(layout=pio.templates["plotly_white"].layout)
COLORS = ["#2563eb", "#dc2626", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2"]


def thin(steps, *columns) -> tuple[list, ...]:
    """At most MAX_POINTS of a line's points (every k-th, the last always kept), as lists with None for a
    step that did not log the value (NaN in a series' packed column)."""
    n = len(steps)  # read once: a column may gain a point meanwhile (another page's poll), never lose one
    idx = list(range(0, n, max(1, -(-n // MAX_POINTS))))
    if idx and idx[-1] != n - 1:
        idx[-1] = n - 1  # the newest step is what a live chart must show
    return tuple([None if (v := col[i]) != v else v for i in idx] for col in (steps, *columns))


def _mode(n: int) -> str:
    return "lines+markers" if n < 30 else "lines"  # a short run still shows its points


def _layout(title: str, y_title: str, empty: bool) -> dict:
    layout = dict(
        title=dict(text=title, x=0.01, font=dict(size=15)),
        template=TEMPLATE, height=HEIGHT, margin=dict(l=56, r=16, t=44, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=1.0, xanchor="right", x=1.0, font=dict(size=11)),
        xaxis=dict(title="step", rangemode="tozero"), yaxis=dict(title=y_title),
        uirevision=title,  # keep the user's zoom while points arrive
    )
    if empty:
        layout["annotations"] = [dict(text="waiting for the first logged step", showarrow=False, x=0.5, y=0.5,
                                      xref="paper", yref="paper", font=dict(size=13, color="#6b7280"))]
        layout["xaxis"]["showticklabels"] = layout["yaxis"]["showticklabels"] = False
    return layout


def figure_of(traces: list[dict], layout: dict) -> go.Figure:
    """One call builds the figure: plotly's update_* methods parse every key as a path and make a class for
    each (~1,000 objects in reference cycles and twice the time per figure, at every tick of a live page)."""
    return go.Figure(data=traces, layout=layout)


def _whole_steps(layout: dict, last_step: int) -> None:
    """Steps are whole numbers: no 0.5 ticks on a short run."""
    layout["xaxis"].update(dict(tickmode="linear", tick0=0, dtick=1) if last_step <= 12 else dict(tickformat="d"))


def _last_step(*series: Optional[RunSeries]) -> int:
    return max([s.train_steps[-1] for s in series if s is not None and s.train_steps] or [0])


def _line(**kw) -> dict:
    return dict(type="scatter", **kw)


def loss_figure(series: Optional[RunSeries], overlays: Iterable[tuple[str, RunSeries]] = (),
                name: str = "this run") -> go.Figure:
    overlays = list(overlays)
    has_any = (series is not None and series.has("loss")) or any(s.has("loss") for _, s in overlays)
    layout, traces = _layout(CHART["loss"].title, CHART["loss"].y_title, empty=not has_any), []
    if series is not None and series.has("loss"):
        steps, raw_drawn, smoothed = thin(series.train_steps, series.metrics["loss"], series.loss_smoothed)
        traces.append(_line(x=steps, y=raw_drawn, name="loss", mode=_mode(len(series.train_steps)),
                            line=dict(color=COLORS[0], width=1), opacity=0.35, marker=dict(size=4)))
        traces.append(_line(x=steps, y=smoothed, name="smoothed", mode="lines", line=dict(color=COLORS[0], width=2.5)))
    if series is not None and series.eval_steps:
        traces.append(_line(x=list(series.eval_steps), y=list(series.eval_losses), name="eval loss",
                            mode="lines+markers", line=dict(color="#f97316", width=2, dash="dot"), marker=dict(size=7)))
    for i, (other, s) in enumerate(overlays):
        if not s.has("loss"):
            continue
        steps, smoothed = thin(s.train_steps, s.loss_smoothed)
        traces.append(_line(x=steps, y=smoothed, name=other, mode="lines",
                            line=dict(color=COLORS[(i + 1) % len(COLORS)], width=2)))
    _whole_steps(layout, _last_step(series, *(s for _, s in overlays)))
    return figure_of(traces, layout)


def metric_figure(chart: Chart, series: Optional[RunSeries]) -> go.Figure:
    """Every metric the table puts on this chart, one line each (one more, thinner, per other rank)."""
    drawn = [m for m in on_chart(chart.name) if series is not None and series.has(m.name)]
    title = chart.title
    if chart.name == "memory":
        title += " (GPU)" if any(m.name.startswith("vram") for m in drawn) else " (process)"
    layout, traces = _layout(title, chart.y_title, empty=not drawn), []
    if not drawn:
        return figure_of(traces, layout)
    mode = _mode(len(series.train_steps))
    values = []
    for m in drawn:
        color = COLORS[METRICS.index(m) % len(COLORS)]
        ranks = series.other_ranks(m.name)
        # connectgaps: a metric logged only on some steps (grpo's rewards, when a batch is reused) is one line
        steps, ys = thin(series.train_steps, series.metrics[m.name])
        values += [v for v in ys if v is not None]
        traces.append(_line(x=steps, y=ys, mode=mode, connectgaps=True,
                            name=f"{m.label} (rank 0)" if ranks else m.label, line=dict(color=color, width=2)))
        for key in ranks:  # several processes: one thinner line per other rank
            steps, ys = thin(series.train_steps, series.metrics[key])
            traces.append(_line(x=steps, y=ys, mode=mode, name=f"{m.label} (rank {split_rank(key)[1]})",
                                line=dict(color=color, width=1, dash="dot")))
    if chart.name == "lr" and values and max(values) == min(values):
        layout["yaxis"]["range"] = [0, max(values) * 1.5 or 1.0]  # a constant schedule would sit at 0 in [-1, 1]
    elif chart.name != "lr":
        layout["yaxis"]["rangemode"] = "tozero"
    else:
        layout["yaxis"]["exponentformat"] = "e"
    _whole_steps(layout, _last_step(series))
    return figure_of(traces, layout)


def has_data(chart: Chart, series: Optional[RunSeries]) -> bool:
    """Whether the run has logged any metric this chart draws."""
    return series is not None and any(series.has(m.name) for m in on_chart(chart.name))


def figure(chart: Chart, series: Optional[RunSeries], overlays: Iterable[tuple[str, RunSeries]] = ()) -> go.Figure:
    """The figure of one chart of engine.runs.metrics.CHARTS for a run (and, for the loss, other runs)."""
    if chart.name == "loss":
        return loss_figure(series, overlays)
    return metric_figure(chart, series)


def lr_figure(series: Optional[RunSeries]) -> go.Figure:
    return metric_figure(CHART["lr"], series)


def throughput_figure(series: Optional[RunSeries]) -> go.Figure:
    return metric_figure(CHART["throughput"], series)


def memory_figure(series: Optional[RunSeries]) -> go.Figure:
    """VRAM allocated and reserved on a GPU; the worker's resident memory on CPU (every rank's)."""
    return metric_figure(CHART["memory"], series)
