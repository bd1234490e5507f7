"""The runs list folds each run's events incrementally: a page or API client asking for it every few seconds
costs the lines added since, not the whole file of a long run, and a run folder made again under the same name
is read afresh."""
from __future__ import annotations

import shutil

from engine.runs import store
from engine.runs.events import EventWriter


def _run(path, steps: int, status: str = "running", t0: float = 1000.0):
    w = EventWriter(path / "events.jsonl")
    w.write("status", 0, status="running", total_steps=steps)
    for i in range(1, steps + 1):
        w.write("train", i, loss=2.0 - i / 1000)
    if status != "running":
        w.status(status, steps)
    w.close()


def test_the_runs_list_reads_only_new_lines_and_sees_a_new_file_under_the_same_name(tmp_path):
    run = tmp_path / "saves" / "long"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("model: {name_or_path: m}\nmethod: {finetuning: lora}\n")
    _run(run, 500)
    events = run / "events.jsonl"
    first = store.summarize(run)
    assert first.status in ("running", "stopped", "failed", "unknown") and first.step == 500
    size = events.stat().st_size
    assert store._FOLDS[str(events)][0].offset == size  # the whole file read once
    w = EventWriter(events)
    w.write("train", 501, loss=1.4)
    w.status("finished", 501)
    w.close()
    second = store.summarize(run)
    assert second.step == 501 and second.status == "finished" and second.final_loss == 1.4
    assert store._FOLDS[str(events)][0].offset == events.stat().st_size > size
    assert first.step == 500  # summaries are copies: a later fold does not change an earlier answer

    shutil.rmtree(run)  # deleted, and a new run started under the same name
    run.mkdir()
    (run / "config.yaml").write_text("model: {name_or_path: m}\nmethod: {finetuning: lora}\n")
    _run(run, 3)
    third = store.summarize(run)
    assert third.step == 3 and third.final_loss is not None and third.status != "finished", third
