"""Faults a long run meets, with the real worker on the tiny model: a checkpoint save that fails
because the disk is full, a worker killed mid-step, a worker that hangs, Start pressed twice."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from engine import config as C
from engine.runs import launcher
from engine.runs.events import EventReader, read_all
from engine.runs.processes import worker_info
from engine.runs.store import checkpoints, summarize
from tests.conftest import REPO, run_worker
from webui import state as S
from webui.live import RunFollower
from webui.progress import progress_html


def wait_for_event(run_dir: Path, pred, timeout: float = 240, reader: EventReader | None = None) -> dict:
    """The first event after those already taken from `reader` that satisfies pred. Events read past the match
    stay on the reader for the next call, so waiting for A then B with one reader never skips a B that came in
    the same read as A."""
    reader = reader or EventReader(run_dir / "events.jsonl")
    unread = reader.__dict__.setdefault("_unread", [])
    deadline = time.time() + timeout
    while time.time() < deadline:
        unread.extend(reader.read_new())
        while unread:
            e = unread.pop(0)
            if pred(e):
                return e
        time.sleep(0.02)
    raise AssertionError(f"no such event in {timeout} s; last: {read_all(run_dir / 'events.jsonl')[-3:]}")


def is_checkpoint(e: dict) -> bool:
    return e.get("kind") == "status" and e.get("status") == "checkpoint"


def _ignore_sigxfsz():
    # With SIGXFSZ ignored a write past RLIMIT_FSIZE fails with EFBIG, as on a full disk, instead of
    # killing the process: the worker's own error handling is what is under test.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def test_a_checkpoint_that_cannot_be_written_leaves_the_previous_one_whole_and_resume_works(make_config):
    cfg = make_config(train={"max_steps": 10, "save_steps": 5, "save_total_limit": 1})
    run_dir = cfg.parent
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_ignore_sigxfsz)
    try:
        wait_for_event(run_dir, is_checkpoint)
        # From now on no file may grow past 200 kB: the next checkpoint (its tokenizer.json alone is
        # ~3 MB) fails part-way through, exactly as it would on a full disk.
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (200_000, 200_000))
        _, err = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 1, err[-2000:]
    evts = read_all(run_dir / "events.jsonl")
    error = [e for e in evts if e["kind"] == "error"][-1]
    assert "disk is full" in error["message"] and "Resume" in error["message"], error["message"]
    s = summarize(run_dir)
    assert s.status == "failed" and "disk is full" in s.reason
    # Only whole checkpoints carry a checkpoint name: the half-written step-10 save is not one of them.
    named = sorted(p.name for p in (run_dir / "checkpoints").iterdir() if p.name.startswith("checkpoint-"))
    assert named == ["checkpoint-5"], named
    ck = run_dir / "checkpoints" / "checkpoint-5"
    for f in ("trainer_state.json", "adapter_model.safetensors", "optimizer.pt", "scheduler.pt"):
        assert (ck / f).is_file() and (ck / f).stat().st_size > 0, f
    assert s.checkpoints == [str(ck)]

    out = run_worker(cfg)  # room again: Resume continues from checkpoint-5 and finishes
    assert out.returncode == 0, out.stderr[-3000:]
    evts = read_all(run_dir / "events.jsonl")
    assert any(e.get("what") == "resuming" and e.get("checkpoint") == "checkpoint-5" for e in evts)
    assert evts[-1]["status"] == "finished" and evts[-1]["step"] == 10
    assert not [p for p in (run_dir / "checkpoints").iterdir() if p.name.startswith(".saving-")], \
        "the leftover of the failed save was swept"
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def _start_in(tmp_path: Path, model: Path, run_name: str, **train) -> S.RunState:
    cfg = C.RunConfig()
    for k, v in {"model.name_or_path": str(model), "data.datasets": ["identity"], "data.cutoff_len": 128,
                 "train.batch_size": 4, "train.learning_rate": 0.003, "train.logging_steps": 1,
                 "output.saves_dir": str(tmp_path / "saves"), "output.run_name": run_name,
                 "report.held_out": "none",  # no report card: these tests are about faults, not answers
                 **{f"train.{k}": v for k, v in train.items()}}.items():
        cfg = C.replace(cfg, k, v)
    return S.RunState(config=cfg)


def test_a_worker_killed_mid_step_shows_failed_within_seconds_and_resume_from_the_ui_finishes(
        tmp_path, tiny_model_dir):
    st = S.start(_start_in(tmp_path, tiny_model_dir, "killed", max_steps=14, save_steps=4))
    run_dir = Path(st.run_dir)
    follower = RunFollower.of(run_dir)
    try:
        wait_for_event(run_dir, is_checkpoint)
        wait_for_event(run_dir, lambda e: e.get("kind") == "train" and e["step"] >= 5)
        pid = worker_info(run_dir)["pid"]
        os.killpg(pid, signal.SIGKILL)  # no goodbye: the OOM killer, a power cut
        killed_at = time.time()
        while launcher.worker_alive(run_dir) and time.time() - killed_at < 10:
            time.sleep(0.05)
        s = summarize(run_dir)
        seen_in = time.time() - killed_at
    finally:
        launcher.stop(run_dir, grace_s=0, wait=True)
    assert s.status == "failed" and "died" in s.reason, s
    assert seen_in < 5, f"the list said failed only after {seen_in:.1f} s"
    assert s.checkpoints and s.checkpoints[-1].endswith("checkpoint-4"), s.checkpoints
    # What the Train tab draws for it: a red "failed" badge (the page checks liveness, not only events).
    follower.poll()
    html = progress_html(follower.name, follower.series, alive=launcher.worker_alive(run_dir),
                         now=time.time() + 6)
    assert "data-status='failed'" in html

    S.resume(st)  # the Resume button
    wait_for_event(run_dir, lambda e: e.get("status") in ("finished", "failed"), timeout=300,
                   reader=EventReader(run_dir / "events.jsonl"))
    evts = read_all(run_dir / "events.jsonl")
    assert evts[-1]["status"] == "finished" and evts[-1]["step"] == 14, evts[-3:]
    assert any(e.get("what") == "resuming" for e in evts)
    assert summarize(run_dir).status == "finished"


def test_a_worker_that_stops_writing_is_shown_stalled_and_recovers_when_it_moves(make_config, monkeypatch):
    monkeypatch.setenv("WHETSTONE_STALL_SECONDS", "1.5")
    cfg = make_config(train={"max_steps": 400, "save_steps": 1000})
    run_dir = cfg.parent
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_event(run_dir, lambda e: e.get("kind") == "train" and e["step"] >= 2)
        assert summarize(run_dir).status == "running"
        proc.send_signal(signal.SIGSTOP)  # alive, but silent: a hung disk, a deadlock
        time.sleep(2.5)
        s = summarize(run_dir)
        assert s.status == "stalled" and "written nothing" in s.reason, s
        follower = RunFollower.of(run_dir)
        follower.poll()
        html = progress_html(follower.name, follower.series, alive=True)
        assert "data-status='stalled'" in html and "Stop it and Resume" in html
        proc.send_signal(signal.SIGCONT)
        wait_for_event(run_dir, lambda e: e.get("kind") == "train", reader=follower.reader)
        assert summarize(run_dir).status == "running"
        # Stop works on a hung worker too: it is woken, saves a checkpoint and ends "stopped".
        proc.send_signal(signal.SIGSTOP)
        assert launcher.stop(run_dir, grace_s=60, wait=True)
        assert proc.wait(timeout=10) == 0
        s = summarize(run_dir)
        assert s.status == "stopped" and s.checkpoints, s
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)


def test_start_pressed_twice_or_from_two_browsers_starts_one_run(tmp_path, tiny_model_dir):
    """Four Start clicks at the same moment (two sessions, double clicks) and a CLI start: one run."""
    barrier = threading.Barrier(4)
    results: list = []

    def click(i: int) -> None:
        st = _start_in(tmp_path, tiny_model_dir, f"click{i}", max_steps=200, save_steps=1000)
        barrier.wait()
        try:
            results.append(S.start(st).run_dir)
        except launcher.LaunchError as e:
            results.append(e)

    threads = [threading.Thread(target=click, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    saves = tmp_path / "saves"
    started = [r for r in results if isinstance(r, str)]
    try:
        assert len(started) == 1, results
        refused = [r for r in results if isinstance(r, launcher.LaunchError)]
        assert len(refused) == 3 and all("still going" in str(r) for r in refused)
        # A second process (another app, the CLI) is refused too, through the same lock.
        cli_cfg = tmp_path / "cli.yaml"
        cli_cfg.write_text(yaml.safe_dump(C.to_dict(_start_in(tmp_path, tiny_model_dir, "cli").config)))
        out = subprocess.run([sys.executable, "app.py", "train", str(cli_cfg)], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and "still going" in out.stderr, out.stderr
        runs = sorted(p.name for p in saves.iterdir() if not p.name.startswith("."))
        assert runs == [Path(started[0]).name], runs
    finally:
        for r in started:
            launcher.stop(r, grace_s=30, wait=True)
