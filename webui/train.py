"""Train tab: Start / Stop / Resume, live charts (one per chart of engine.runs.metrics.CHARTS) fed by this
session's follower, the progress line, the worker's log, the runs found in saves/ (pick one to see it and
load its config; overlay others on the loss chart), and the current config as YAML and as a command line.
The run queue (webui.queue_panel) and the comparison of runs (webui.compare_panel) are built into it.

Handlers are module-level functions of (panel, values...) that return updates keyed by the panel's
components; `wire` binds them to the panel with functools.partial.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Optional

import gradio as gr

from engine import config as C
from engine.runs import launcher, trackers
from engine.runs import store as runs
from engine.runs.paths import REPO
from engine.runs.metrics import CHARTS
from engine.runs.processes import worker_alive
from engine.runs import queue as run_queue
from webui import charts, compare_panel, fields, presets, progress, queue_panel, report_view, runs_table, schedule_view
from webui import state as S
from webui.form import ConfigForm, ConfigViews
from webui.live import RunFollower, Watch

TICK_SECONDS = 1.0
TAB_ID = "train"
# The CSS class of each chart (the browser tests and the page's style find them by these).
CHART_CLASS = {"loss": "ws-chart-loss", "lr": "ws-chart-lr", "throughput": "ws-chart-tput", "memory": "ws-chart-mem"}


@dataclass
class TrainPanel:
    fields: list[fields.FieldWidget]
    views: ConfigViews
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    message: gr.Markdown
    progress: gr.HTML
    failure: gr.Markdown
    report: gr.HTML                 # the watched run's report card (held-out hits, drift)
    schedule: schedule_view.ScheduleView  # epochs / steps resolved from the data, before Start
    plots: dict[str, gr.Plot]  # chart name -> its plot
    samples: gr.Dataframe      # grpo / ppo: the latest sampled completions with their rewards
    log: gr.Textbox
    runs: gr.Dataframe
    run_picker: gr.Dropdown
    compare: gr.Dropdown
    refresh: gr.Button
    preset_name: gr.Textbox
    save_preset: gr.Button
    timer: gr.Timer
    state: gr.State                 # the session's RunState
    watch: Optional[gr.State] = None  # the session's Watch (set by wire)
    form: Optional[ConfigForm] = None
    queue: Optional[queue_panel.QueuePanel] = None
    comparison: Optional[compare_panel.ComparePanel] = None
    trackers: Optional[gr.Markdown] = None  # how to open what the watched run's trackers wrote

    @property
    def shown(self) -> list[Any]:
        """Everything the panel shows about the watched run."""
        return [self.message, self.progress, self.failure, self.report, *self.plots.values(), self.samples, self.log,
                self.runs, self.run_picker, self.compare, self.trackers]

    @property
    def everything(self) -> list[Any]:
        return [*self.form.outputs, self.watch, *self.shown]


def build(state: gr.State) -> TrainPanel:
    st: S.RunState = state.value
    with gr.Row(equal_height=True):
        with gr.Column(scale=3):
            run_fields = fields.build(["output.run_name"], st.config)
        with gr.Column(scale=2, min_width=320):
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_classes=["ws-start"])
                queue = queue_panel.button()
                stop = gr.Button("Stop", variant="stop", elem_classes=["ws-stop"])
                resume = gr.Button("Resume", variant="secondary", elem_classes=["ws-resume"])
    steps = schedule_view.build(st.config)
    problems = gr.Markdown(elem_classes=["ws-problems"])
    message = gr.Markdown(elem_classes=["ws-message"])
    prog = gr.HTML(progress.progress_html(None, None), elem_classes=["ws-progress-box"])
    failure = gr.Markdown(elem_classes=["ws-failure"])
    report = gr.HTML("", elem_classes=["ws-report-box"])
    waiting = queue_panel.build(queue, st)
    plots = {}
    for row in range(0, len(CHARTS), 2):  # two charts a row
        with gr.Row():
            for chart in CHARTS[row:row + 2]:
                plots[chart.name] = gr.Plot(charts.figure(chart, None), show_label=False, visible=not chart.optional,
                                            elem_classes=[CHART_CLASS.get(chart.name, f"ws-chart-{chart.name}")])
    samples = gr.Dataframe(headers=SAMPLE_HEADERS, value=[], interactive=False, wrap=True, visible=False,
                           column_widths=["6%", "26%", "44%", "8%", "16%"],
                           label="Sample completions (latest logged step) and their rewards",
                           elem_classes=["ws-samples"])
    tracked = gr.Markdown(elem_classes=["ws-trackers"])
    with gr.Accordion("Worker log (last lines)", open=False):
        log = gr.Textbox(show_label=False, lines=12, max_lines=12, autoscroll=True, interactive=False,
                         elem_classes=["ws-log"])
    gr.Markdown(f"### Runs\nFound in `{S.saves_path(st)}`. Pick one to see its charts and load its settings "
                "into the tabs; pick others to compare their loss curves.")
    with gr.Row(equal_height=True):
        run_picker = gr.Dropdown(label="Show run", choices=[], value=None, scale=3, elem_classes=["ws-run-picker"])
        compare = gr.Dropdown(label="Compare loss with", choices=[], value=[], multiselect=True, scale=3,
                              elem_classes=["ws-compare"])
        refresh = gr.Button("Refresh list", scale=1, size="md")
    table = gr.Dataframe(headers=runs_table.HEADERS, value=[], interactive=False, wrap=True,
                         elem_classes=["ws-runs"])
    comparison = compare_panel.build(st)
    with gr.Accordion("Config as YAML and as a command line", open=False):
        cli = gr.Code(label="Same run from a terminal", language="shell", interactive=False, lines=2)
        yaml_view = gr.Code(label="config.yaml", language="yaml", interactive=False, lines=12, max_lines=24)
        with gr.Row(equal_height=True):
            preset_name = gr.Textbox(label="Save these settings as preset", placeholder="my-preset", scale=3)
            save_preset = gr.Button("Save preset", scale=1)
    timer = gr.Timer(TICK_SECONDS)
    return TrainPanel(fields=run_fields, views=ConfigViews(yaml=yaml_view, cli=cli, problems=problems),
                      start=start, stop=stop, resume=resume, message=message, progress=prog, failure=failure,
                      report=report, schedule=steps, plots=plots, samples=samples, log=log, runs=table,
                      run_picker=run_picker, compare=compare, refresh=refresh,
                      preset_name=preset_name, save_preset=save_preset, timer=timer, state=state, queue=waiting,
                      comparison=comparison, trackers=tracked)


# ---------------------------------------------------------------------------------------------
# What the panel shows
# ---------------------------------------------------------------------------------------------

def chart_updates(p: TrainPanel, watch: Watch) -> dict:
    """Every chart's figure; a stage's own charts (optional) show only once the run logs their metrics."""
    series = watch.current.series if watch.current else None
    overlays = [(name, f.series) for name, f in watch.overlays.items()]
    out: dict[Any, Any] = {}
    for c in CHARTS:
        fig = charts.figure(c, series, overlays)
        out[p.plots[c.name]] = gr.update(value=fig, visible=charts.has_data(c, series)) if c.optional else fig
    return {**out, **samples_updates(p, series)}


SAMPLE_HEADERS = ["step", "prompt", "completion", "reward", "each reward"]


def sample_rows(series) -> list[list]:
    """The latest samples event as table rows: step, prompt, completion, weighted reward, each reward."""
    if series is None or not series.samples:
        return []
    return [[series.samples_step, str(r.get("prompt", "")), str(r.get("completion", "")), r.get("reward"),
             ", ".join(f"{k} {v}" for k, v in (r.get("rewards") or {}).items())] for r in series.samples]


def samples_updates(p: TrainPanel, series) -> dict:
    rows = sample_rows(series)
    return {p.samples: gr.update(value=rows, visible=bool(rows))}


def status_updates(p: TrainPanel, watch: Watch) -> dict:
    cur = watch.current
    if cur is None:
        return {p.progress: progress.progress_html(None, None), p.failure: ""}
    alive = worker_alive(cur.run_dir)
    return {p.progress: progress.progress_html(cur.name, cur.series, alive=alive),
            p.failure: progress.failure_markdown(cur.series, alive=alive)}


def report_updates(p: TrainPanel, watch: Watch) -> dict:
    cur = watch.current
    if cur is None:
        return {p.report: ""}
    answering = cur.series.detail.endswith("report card") and not cur.series.ended
    return {p.report: report_view.card_html(cur.run_dir, "report" if answering else cur.series.status)}


def runs_updates(p: TrainPanel, st: S.RunState, watch: Watch) -> dict:
    found = runs_table.find(S.saves_path(st))
    names = [s.name for s in found]
    current = watch.current.name if watch.current else None
    watch.table = runs_table.rows(found)
    return {p.runs: watch.table,
            p.run_picker: gr.update(choices=names, value=current if current in names else None),
            p.compare: gr.update(choices=[n for n in names if n != current],
                                 value=[n for n in watch.overlays if n in names and n != current])}


def attach(watch: Watch, run_dir: Optional[Path]) -> Watch:
    """Point this session's charts at a run; its history is read once, then only new lines."""
    if run_dir is None:
        return dataclasses.replace(watch, current=None)
    follower = RunFollower.of(run_dir)
    follower.poll()
    return dataclasses.replace(watch, current=follower,
                               overlays={k: v for k, v in watch.overlays.items() if k != follower.name})


def trackers_markdown(run_dir: Optional[Path]) -> str:
    """How to open what the run's experiment trackers wrote (train.report_to), one command each."""
    if run_dir is None:
        return ""
    try:
        names = C.load(Path(run_dir) / "config.yaml", check_files=False).train.report_to
    except C.ConfigError:
        return ""
    shown = Path(run_dir).resolve()
    shown = shown.relative_to(REPO) if shown.is_relative_to(REPO) else shown
    lines = [f"- **{trackers.BY_NAME[n].label}**: `{trackers.open_command(shown, n)}`" for n in names]
    return ("**Experiment trackers** (from the repository folder):\n" + "\n".join(lines)) if lines else ""


def panel_updates(p: TrainPanel, st: S.RunState, watch: Watch) -> dict:
    log = watch.current.log_tail(force=True) if watch.current else ""
    return {**chart_updates(p, watch), **status_updates(p, watch), **runs_updates(p, st, watch),
            **report_updates(p, watch), p.log: log or "",
            p.trackers: trackers_markdown(watch.current.run_dir if watch.current else None)}


# ---------------------------------------------------------------------------------------------
# Handlers: values in, updates out
# ---------------------------------------------------------------------------------------------

def on_start(p: TrainPanel, st: S.RunState, watch: Watch) -> dict:
    try:
        new = S.start(st)
    except C.ConfigError as e:
        items = "\n".join(f"- {x}" for x in e.problems)
        return {p.message: f"**Not started: the settings have problems.**\n{items}"}
    except launcher.DataProblems as e:
        return {p.message: "**Not started.** The data has problems; fix them (the Dataset tab shows each row) "
                           "and Start again:\n" + "\n".join(_bullets(x) for x in e.problems)}
    except launcher.LaunchError as e:
        offer = " Or press **Queue**: it starts by itself when that run ends." if S.active_run(st) else ""
        return {p.message: f"**Not started.** {e}{offer}"}
    watch = attach(watch, Path(new.run_dir))
    return {p.state: new, p.watch: watch, p.message: f"Started **{Path(new.run_dir).name}**.",
            **panel_updates(p, new, watch)}


def on_stop(p: TrainPanel, st: S.RunState) -> dict:
    if S.stop(st):
        return {p.message: "Stopping: the worker saves a checkpoint, then exits. **Resume** continues from it."}
    return {p.message: "Nothing to stop: the run shown is not running."}


def on_resume(p: TrainPanel, st: S.RunState, watch: Watch) -> dict:
    try:
        S.resume(st)
    except launcher.LaunchError as e:
        return {p.message: f"**Not resumed.** {e}"}
    return {p.message: f"Resuming **{Path(st.run_dir).name}** from its last checkpoint.", **status_updates(p, watch)}


def on_tick(p: TrainPanel, st: S.RunState, watch: Watch) -> dict:
    cur = watch.current
    if cur is None:
        return {p.message: gr.skip()}  # not {}: Gradio reads an empty dict as one value for every output
    before, before_detail = cur.series.status, cur.series.detail
    out: dict[Any, Any] = {}
    if watch.poll():
        out.update(chart_updates(p, watch))
        live = runs_table.with_live_row(watch.table, cur.name, cur.series)
        if live != watch.table:
            watch.table = live
            out[p.runs] = live
    out.update(status_updates(p, watch))
    log = cur.log_tail()
    if log is not None:
        out[p.log] = log
    if cur.series.status != before and cur.series.status in ("running", "finished", "stopped", "failed"):
        out.update(runs_updates(p, st, watch))
    if (cur.series.status, cur.series.detail) != (before, before_detail):
        out.update(report_updates(p, watch))
    if cur.series.ended and (nxt := queued_next(S.saves_path(st), cur)) is not None:
        st, watch = S.watching(st, nxt), attach(watch, nxt)  # the queue started the next run: follow it
        out.update({p.state: st, p.watch: watch, p.message: f"**{nxt.name}** started from the queue.",
                    **panel_updates(p, st, watch)})
    return out


def queued_next(saves: Path, ended: RunFollower) -> Optional[Path]:
    """The run the queue started when the watched one ended (not an older run picked from the list)."""
    last = run_queue.latest_start(saves)
    t = ended.series.last_t
    if not last or last.get("name") == ended.name or t is None or not t - 5 <= last.get("t", 0) <= t + 120:
        return None
    nxt = saves / str(last["name"])
    return nxt if runs.inside(saves, nxt) else None


def on_pick(p: TrainPanel, name: Optional[str], st: S.RunState, watch: Watch) -> dict:
    if not name:
        return {p.message: gr.skip()}
    try:
        run_dir = runs.run_path(S.saves_path(st), name)
    except ValueError as e:
        return {p.message: f"**Not shown.** {e}"}
    new = S.watching(st, run_dir)
    try:
        cfg = C.load(run_dir / "config.yaml", check_files=False)
        new = S.with_config(new, C.replace(cfg, "output.run_name", ""), str(run_dir / "config.yaml"))
        note = f"Showing **{name}**; its settings are loaded into the tabs."
    except C.ConfigError as e:
        note = f"Showing **{name}**; its config could not be loaded: {'; '.join(e.problems)}"
    watch = attach(watch, run_dir)
    return {**p.form.render(new), p.watch: watch, p.message: note, **panel_updates(p, new, watch)}


def on_compare(p: TrainPanel, names: list[str], st: S.RunState, watch: Watch) -> dict:
    saves = S.saves_path(st)
    names = [n for n in names or [] if n in watch.overlays or runs.inside(saves, saves / str(n))]
    keep = {n: watch.overlays.get(n) or RunFollower.of(saves / n) for n in names}
    for f in keep.values():
        f.poll()
    watch = dataclasses.replace(watch, overlays=keep)
    return {p.watch: watch, **chart_updates(p, watch)}


def on_refresh(p: TrainPanel, st: S.RunState, watch: Watch) -> dict:
    return runs_updates(p, st, watch)


def on_save_preset(p: TrainPanel, name: str, st: S.RunState) -> dict:
    try:
        path = presets.save(st.config, name or "")
    except C.ConfigError as e:
        return {p.message: f"**Not saved.** {'; '.join(e.problems)}"}
    new = dataclasses.replace(st, source=str(path))
    return {**p.form.render(new, old=st), p.message: f"Saved preset **{path.stem}** ({path})."}


def on_page_load(p: TrainPanel, saves: str, tabs: gr.Tabs, st: S.RunState, watch: Watch) -> dict:
    """A fresh page (or a second browser) re-attaches to the run that is going, or shows the latest one."""
    fresh = S.initial(saves)
    active = S.active_run(fresh)
    if active is not None:
        try:
            cfg = C.load(active / "config.yaml", check_files=False)
            fresh = S.with_config(fresh, C.replace(cfg, "output.run_name", ""), str(active / "config.yaml"))
        except C.ConfigError:
            pass
        target: Optional[Path] = active
        note = f"Re-attached to **{active.name}**, which is running."
        shown = {tabs: gr.Tabs(selected=TAB_ID)}
    else:
        found = runs_table.find(S.saves_path(fresh))
        target = found[0].path if found else None
        note = ""
        shown = {}
    fresh = S.watching(fresh, target)
    watch = attach(Watch(), target)
    return {**p.form.render(fresh), p.watch: watch, p.message: note, **panel_updates(p, fresh, watch), **shown}


def wire(p: TrainPanel, form: ConfigForm, watch_state: gr.State) -> None:
    p.watch, p.form = watch_state, form
    state, everything, common = p.state, p.everything, dict(show_progress="hidden")
    p.start.click(partial(on_start, p), [state, watch_state], everything, concurrency_id="launch", **common)
    p.stop.click(partial(on_stop, p), [state], [p.message], concurrency_id="launch", **common)
    p.resume.click(partial(on_resume, p), [state, watch_state], [p.message, p.progress, p.failure],
                   concurrency_id="launch", **common)
    p.timer.tick(partial(on_tick, p), [state, watch_state], everything, concurrency_limit=None, **common)
    p.run_picker.input(partial(on_pick, p), [p.run_picker, state, watch_state], everything, **common)
    p.compare.input(partial(on_compare, p), [p.compare, state, watch_state], [watch_state, *p.plots.values(), p.samples],
                    **common)
    p.refresh.click(partial(on_refresh, p), [state, watch_state], [p.runs, p.run_picker, p.compare],
                    api_name="runs_refresh", **common)
    p.save_preset.click(partial(on_save_preset, p), [p.preset_name, state], [*form.outputs, p.message], **common)
    queue_panel.wire(p.queue, state, p.message)
    compare_panel.wire(p.comparison, state, form, p.message)


def page_load_outputs(p: TrainPanel, tabs: gr.Tabs) -> list[Any]:
    return [*p.everything, tabs]


def _bullets(problem: str) -> str:
    """A multi-line problem as a Markdown bullet with one sub-bullet per further line (kept apart on screen)."""
    first, *rest = [line.strip() for line in problem.splitlines() if line.strip()]
    return "\n".join([f"- {first}", *(f"  - {line}" for line in rest)])
