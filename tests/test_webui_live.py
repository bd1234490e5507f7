"""Live charts: a session follows a run's events from its last byte offset and the figures show what
was logged: raw and smoothed loss, eval loss, other runs overlaid, learning rate, throughput, memory."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from webui import charts, progress
from webui.live import RunFollower, RunSeries


def write(path: Path, *events: dict, partial: str = "") -> None:
    with open(path, "a") as f:
        for e in events:
            f.write(json.dumps(e) + "\n")
        f.write(partial)


def train_event(step: int, loss: float, t: float = 0.0, **extra) -> dict:
    return {"t": t or 1000.0 + step, "step": step, "kind": "train", "loss": loss, "lr": 1e-3, "tokens_per_s": 500.0,
            "rss_gib": 1.0, **extra}


def test_the_follower_reads_only_new_lines_and_waits_for_half_written_ones(tmp_path):
    events = tmp_path / "events.jsonl"
    write(events, {"t": 1.0, "step": 0, "kind": "status", "status": "running", "total_steps": 10},
          train_event(1, 2.0))
    f = RunFollower.of(tmp_path)
    assert f.poll() is True
    assert list(f.series.train_steps) == [1] and f.series.total_steps == 10
    offset = f.reader.offset
    assert f.poll() is False and f.reader.offset == offset  # nothing new, nothing re-read
    write(events, train_event(2, 1.8), partial='{"t": 3, "step": 3, "kind": "tra')
    assert f.poll() is True
    assert list(f.series.train_steps) == [1, 2] and f.series.values("loss") == [2.0, 1.8]
    write(events, partial='in", "loss": 1.5}\n')
    f.poll()
    assert list(f.series.train_steps) == [1, 2, 3] and f.series.metrics["loss"][-1] == 1.5


def test_the_loss_chart_gains_a_point_per_logged_step_with_smoothing_and_eval():
    s = RunSeries()
    s.add([train_event(i, 3.0 - 0.1 * i) for i in range(1, 6)] +
          [{"t": 1006.0, "step": 5, "kind": "eval", "eval_loss": 2.6}])
    fig = charts.loss_figure(s)
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["loss"].y) == [2.9, 2.8, 2.7, 2.6, 2.5]
    assert len(by_name["smoothed"].y) == 5
    assert list(by_name["eval loss"].x) == [5] and list(by_name["eval loss"].y) == [2.6]


def test_a_long_history_is_folded_in_pieces_with_nothing_lost_or_repeated(tmp_path, monkeypatch):
    import webui.live as live
    monkeypatch.setattr(live, "POLL_BYTES", 4096)  # a few dozen lines per piece
    events = tmp_path / "events.jsonl"
    write(events, *[train_event(i, 3.0 - i / 1000) for i in range(1, 1201)], partial='{"t": 1, "step": 1201, "ki')
    f = RunFollower.of(tmp_path)
    assert f.poll() is True
    assert list(f.series.train_steps) == list(range(1, 1201))
    assert f.poll() is False
    write(events, partial='nd": "train", "loss": 1.0}\n')
    assert f.poll() is True and f.series.train_steps[-1] == 1201 and len(f.series.train_steps) == 1201
    monkeypatch.setattr(live, "POLL_BYTES", 16)  # every line is longer than a piece: each is read whole
    del f  # its feed goes with it: the next follower reads the file afresh
    g = RunFollower.of(tmp_path)
    assert g.reader.offset == 0
    assert g.poll() is True and list(g.series.train_steps) == list(range(1, 1202))


def test_a_long_run_draws_a_bounded_number_of_points_ending_at_its_newest_step():
    """A page follows a 20,000-step run: each line draws at most MAX_POINTS points (the figure sent at every
    tick, and the work of building it, do not grow with the run), the newest step is always drawn, and the
    smoothed line is the smoothing of every step, not of the points drawn."""
    from engine.runs.metrics import CHARTS
    sizes = {}
    for n in (2_000, 20_000):
        s = RunSeries()
        s.add([train_event(i, 3.0 - i / n + (0.5 if i % 2 else 0.0)) for i in range(1, n + 1)])
        figs = [charts.figure(c, s) for c in CHARTS if not c.optional or charts.has_data(c, s)]
        for fig in figs:
            for trace in fig.data:
                assert len(trace.x) <= charts.MAX_POINTS and trace.x[-1] == n, (trace.name, len(trace.x))
        smoothed = {t.name: t for t in figs[0].data}["smoothed"]
        assert smoothed.y[-1] == ema(s.values("loss"))[-1]
        sizes[n] = sum(len(f.to_json()) for f in figs)
    assert sizes[20_000] < 1.2 * sizes[2_000], sizes


def test_a_one_step_run_still_shows_its_point():
    s = RunSeries()
    s.add([train_event(1, 2.0)])
    fig = charts.loss_figure(s)
    assert "markers" in fig.data[0].mode and list(fig.data[0].y) == [2.0]
    assert not fig.layout.annotations  # no "waiting" note once there is data


def test_an_empty_run_says_it_is_waiting():
    fig = charts.loss_figure(RunSeries())
    assert fig.data == () and "waiting" in fig.layout.annotations[0].text


def test_other_runs_overlay_the_loss_chart_under_their_names():
    a, b = RunSeries(), RunSeries()
    a.add([train_event(i, 2.0) for i in range(1, 4)])
    b.add([train_event(i, 1.0) for i in range(1, 4)])
    fig = charts.loss_figure(a, [("run-b", b)])
    assert "run-b" in [t.name for t in fig.data]


def test_memory_shows_vram_on_gpu_and_process_memory_on_cpu():
    gpu, cpu = RunSeries(), RunSeries()
    gpu.add([train_event(1, 2.0, rss_gib=None, vram_alloc_gib=3.0, vram_reserved_gib=4.0)])
    cpu.add([train_event(1, 2.0)])
    assert {t.name for t in charts.memory_figure(gpu).data} == {"VRAM allocated", "VRAM reserved"}
    assert {t.name for t in charts.memory_figure(cpu).data} == {"process RSS"}


def ema(values: list, weight: float = 0.6) -> list:
    """TensorBoard's debiased moving average, written out here as the reference for the series' own."""
    out, avg, norm = [], 0.0, 0.0
    for v in values:
        if v is None:
            out.append(None)
            continue
        avg, norm = weight * avg + (1 - weight) * v, weight * norm + (1 - weight)
        out.append(avg / norm)
    return out


def test_smoothing_is_debiased_and_keeps_gaps():
    def smoothed(*losses):
        s = RunSeries().add([train_event(i + 1, v) if v is not None else {"t": 1.0 + i, "step": i + 1,
                             "kind": "train", "lr": 1e-3} for i, v in enumerate(losses)])
        return {t.name: list(t.y) for t in charts.loss_figure(s).data}["smoothed"]
    assert smoothed(2.0, 2.0, 2.0) == [2.0, 2.0, 2.0]
    assert smoothed(4.0) == [4.0]
    assert smoothed(1.0, None, 3.0) == ema([1.0, None, 3.0]) and smoothed(1.0, None, 3.0)[1] is None


def test_progress_shows_step_of_total_and_an_eta_from_the_pace():
    s = RunSeries()
    s.add([{"t": 100.0, "step": 0, "kind": "status", "status": "starting"},
           {"t": 101.0, "step": 0, "kind": "status", "status": "running", "total_steps": 20},
           train_event(1, 2.0, t=110.0), train_event(11, 1.5, t=130.0)])
    assert progress.eta_seconds(s) == 18.0  # 2 s a step, 9 steps left
    text = progress.progress_html("my-run", s, now=131.0, alive=True)
    assert "step 11 / 20" in text and "ETA 0:18" in text and "elapsed 0:31" in text


def test_a_failed_run_shows_its_reason_in_plain_words():
    s = RunSeries()
    s.add([{"t": 1.0, "step": 3, "kind": "status", "status": "failed"},
           {"t": 1.0, "step": 3, "kind": "error", "message": "Out of memory: lower train.batch_size to 2.",
            "traceback": "Traceback (most recent call last):\nRuntimeError: CUDA out of memory"}])
    md = progress.failure_markdown(s)
    assert md.startswith("**The run failed.** Out of memory: lower train.batch_size to 2.")
    assert "<details>" in md  # the traceback is there, folded away


def test_the_log_tail_reads_the_end_of_a_big_log_and_only_when_it_grew(tmp_path):
    (tmp_path / "stdout.log").write_text("".join(f"line {i}\n" for i in range(20000)))
    f = RunFollower.of(tmp_path)
    tail = f.log_tail()
    assert tail.splitlines()[-1] == "line 19999" and len(tail.splitlines()) == 40
    assert f.log_tail() is None
    with open(tmp_path / "stdout.log", "a") as fh:
        fh.write("line 20000\n")
    assert f.log_tail().splitlines()[-1] == "line 20000"


def test_a_constant_learning_rate_is_drawn_at_its_value_not_at_zero():
    s = RunSeries()
    s.add([train_event(i, 2.0) for i in range(1, 4)])  # lr 1e-3 throughout
    fig = charts.lr_figure(s)
    low, high = fig.layout.yaxis.range
    assert low == 0 and high > 1e-3


def test_pages_following_one_run_share_one_series_and_each_sees_every_change(tmp_path):
    """A page load (or a tenth page) on a running run reads nothing the app already read and holds no copy of
    the run's history; every page still learns of each new line once; the series goes with the last page."""
    import gc
    import webui.live as live
    events = tmp_path / "events.jsonl"
    write(events, *[train_event(i, 2.0) for i in range(1, 501)])
    first = RunFollower.of(tmp_path)
    assert first.poll() is True
    read_to = first.reader.offset
    second = RunFollower.of(tmp_path)  # the page reloaded: a new session
    assert second.series is first.series
    assert second.poll() is True and second.reader.offset == read_to  # news to this page, nothing re-read
    assert second.poll() is False
    write(events, train_event(501, 1.0))
    assert first.poll() is True and second.poll() is True  # read once, seen by both
    assert first.poll() is False and second.poll() is False
    assert first.series.train_steps[-1] == 501 and len(first.series.metrics["loss"]) == 501
    del first, second
    gc.collect()
    assert os.path.realpath(tmp_path) not in live._FEEDS


def test_a_run_folder_made_again_under_the_same_name_is_followed_afresh(tmp_path):
    events = tmp_path / "events.jsonl"
    write(events, {"t": 1.0, "step": 0, "kind": "status", "status": "running", "total_steps": 9},
          *[train_event(i, 2.0, t=1000.0 + i) for i in range(1, 9)])
    f = RunFollower.of(tmp_path)
    f.poll()
    assert f.series.train_steps[-1] == 8
    events.unlink()
    write(events, {"t": 5.0, "step": 0, "kind": "status", "status": "running", "total_steps": 3},
          train_event(1, 0.5, t=2000.0))
    assert f.poll() is True
    assert list(f.series.train_steps) == [1] and f.series.total_steps == 3 and f.series.values("loss") == [0.5]


def test_a_long_runs_series_costs_a_few_bytes_per_step():
    """The app holds every followed run's series for as long as a page shows it: a 40,000-step run must not
    cost megabytes per thousand steps (a list of Python floats per metric did: ~310 bytes a step)."""
    import tracemalloc
    events = [train_event(i, 2.0 - i / 1e5, t=1000.0 + i) for i in range(1, 40_001)]
    tracemalloc.start()
    try:
        s = RunSeries().add(events)
        size, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(s.train_steps) == 40_000 and s.latest("loss") == events[-1]["loss"]
    assert size / 40_000 < 80, f"{size / 40_000:.0f} bytes per step"
