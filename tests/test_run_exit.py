"""Runs one after another, as a script, a Makefile or CI starts them: the CLI returns only once its worker
has exited, a run that has said its last word is never "still going", and a new run waits for a worker
that is still exiting (it may hold GPU memory) instead of starting beside it."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from engine import config as C
from engine.runs import launcher
from engine.runs.events import EventWriter, read_all
from engine.runs.processes import proc_start_time, worker_alive, write_worker_file
from engine.runs.store import summarize
from tests.conftest import REPO


def test_three_cli_trainings_back_to_back_all_succeed(tmp_path, tiny_model_dir):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_model_dir)}, "data": {"datasets": ["identity"], "cutoff_len": 64},
        "train": {"max_steps": 1, "batch_size": 2, "logging_steps": 1}, "output": {"saves_dir": str(tmp_path)}}))
    for name in ("a", "b", "c"):
        out = subprocess.run([sys.executable, "app.py", "train", str(cfg), "--set", f"output.run_name={name}"],
                             cwd=REPO, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"run {name}: {out.stdout[-1000:]}{out.stderr[-2000:]}"
        assert f"finished: {tmp_path / name}" in out.stdout
        # The CLI has returned: the worker is gone, so the next command may start a run (and its memory).
        assert not worker_alive(tmp_path / name)
        assert read_all(tmp_path / name / "events.jsonl")[-1]["status"] == "finished"


def _sleeper() -> subprocess.Popen:
    """A real process standing in for a worker that lives on (its pid and start time in worker.json)."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"], start_new_session=True)


def _past_run(saves: Path, name: str, last_status: str, worker: subprocess.Popen, started: float) -> Path:
    run_dir = saves / name
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text(yaml.safe_dump({"output": {"run_name": name}}))
    ev = EventWriter(run_dir / "events.jsonl")
    ev.status("starting", 0)
    ev.status("running", 0, total_steps=3)
    ev.status(last_status, 3, output="adapter")
    ev.close()
    write_worker_file(run_dir / "worker.json", {"pid": worker.pid, "proc_start": proc_start_time(worker.pid),
                                               "started": started})
    return run_dir


def _config(saves: Path, model: Path, name: str) -> C.RunConfig:
    cfg = C.RunConfig()
    for k, v in {"model.name_or_path": str(model), "data.datasets": ["identity"], "train.max_steps": 1,
                 "output.saves_dir": str(saves), "output.run_name": name}.items():
        cfg = C.replace(cfg, k, v)
    return cfg


def test_a_finished_run_whose_worker_is_still_exiting_is_waited_for_not_called_going(
        tmp_path, tiny_model_dir, monkeypatch):
    saves = tmp_path / "saves"
    lingering = _sleeper()
    try:
        run_dir = _past_run(saves, "old", "finished", lingering, started=time.time() - 60)
        s = summarize(run_dir)
        assert s.alive and not s.going and s.status == "finished"  # a terminal status is final
        assert launcher.active_run(saves) is None  # a refreshed page does not re-attach to it

        # It never exits: the new run is refused with the pid, after a bounded wait (nothing hangs).
        monkeypatch.setattr(launcher, "EXIT_WAIT_S", 0.5)
        with pytest.raises(launcher.LaunchError, match=rf"has finished, but its worker \(pid {lingering.pid}\)"):
            launcher.start(_config(saves, tiny_model_dir, "new"))
        assert not (saves / "new").exists()

        # It exits while the launcher waits: the new run starts as soon as it is gone, never beside it.
        monkeypatch.setattr(launcher, "EXIT_WAIT_S", 60.0)
        subprocess.Popen([sys.executable, "-c", f"import os, time; time.sleep(1.5); os.kill({lingering.pid}, 9)"])
        t0 = time.time()
        new = launcher.start(_config(saves, tiny_model_dir, "new"))
        assert lingering.poll() is not None or not worker_alive(run_dir)
        assert time.time() - t0 >= 1.0, "the new run started while the old worker still lived"
        launcher.stop(new, grace_s=30, wait=True)
    finally:
        lingering.kill()
        lingering.wait()


def test_a_resumed_worker_that_has_not_written_yet_is_going(tmp_path, tiny_model_dir):
    """A live worker started after the run's last word is a new attempt (Resume), not a finished run."""
    saves = tmp_path / "saves"
    worker = _sleeper()
    try:
        run_dir = _past_run(saves, "resumed", "failed", worker, started=time.time() + 1)
        s = summarize(run_dir)
        assert s.going
        assert launcher.active_run(saves) == run_dir
        with pytest.raises(launcher.LaunchError, match="'resumed' is still going"):
            launcher.start(_config(saves, tiny_model_dir, "other"))
    finally:
        worker.kill()
        worker.wait()
    assert not summarize(run_dir).going
    info = json.loads((run_dir / "worker.json").read_text())
    assert info["pid"] == worker.pid


def test_stop_ends_the_worker_and_its_whole_process_group_promptly(tmp_path, tiny_model_dir):
    """Stop (the button, Ctrl-C): the step in progress ends, a checkpoint is written, the worker says 'stopped'
    and exits, and no process of its group is left holding memory. The bounds are loose (the machine may be
    busy); bench/stop_exit.py measures the times themselves."""
    import os
    from engine.runs.events import EventReader
    from engine.runs.processes import worker_info
    from tests.test_faults import wait_for_event
    cfg = C.replace(C.replace(_config(tmp_path / "saves", tiny_model_dir, "stopped"), "train.max_steps", 2000),
                    "train.save_steps", 3)
    run_dir = launcher.start(cfg)
    reader = EventReader(run_dir / "events.jsonl")
    try:
        wait_for_event(run_dir, lambda e: e.get("status") == "checkpoint", reader=reader)
        wait_for_event(run_dir, lambda e: e.get("kind") == "train", reader=reader)
        pgid = int(worker_info(run_dir)["pgid"])
        t0 = time.time()
        assert launcher.stop(run_dir, wait=True)
        gone_at = time.time()
    finally:
        launcher.stop(run_dir, grace_s=0, wait=True)
    with pytest.raises(ProcessLookupError):
        os.killpg(pgid, 0)  # nothing of the worker's group is left
    evts = read_all(run_dir / "events.jsonl")
    last = evts[-1]
    assert last["status"] == "stopped" and (run_dir / "checkpoints" / last["checkpoint"]).is_dir(), evts[-3:]
    assert gone_at - t0 < 60, f"Stop took {gone_at - t0:.1f} s to end the worker"
    assert gone_at - last["t"] < 15, f"the worker lived {gone_at - last['t']:.1f} s after its last event"


def test_stop_while_the_report_card_answers_ends_the_worker_at_once_with_the_weights_kept(tmp_path, tiny_model_dir):
    """The report card comes after the weights are saved; it can take minutes on a big model. Stop then ends
    it between two tokens: the run is finished (its output whole), the card says it was skipped."""
    from engine.runs.events import EventReader
    from tests.test_faults import wait_for_event
    cfg = _config(tmp_path / "saves", tiny_model_dir, "carded")
    for k, v in {"report.held_out": "auto", "report.max_new_tokens": 4096}.items():  # a random model never
        cfg = C.replace(cfg, k, v)                                                     # stops on its own
    run_dir = launcher.start(cfg)
    reader = EventReader(run_dir / "events.jsonl")
    try:
        wait_for_event(run_dir, lambda e: e.get("what") == "report card", reader=reader)
        time.sleep(1.0)  # well into the answers
        t0 = time.time()
        assert launcher.stop(run_dir, wait=True)
        gone_at = time.time()
    finally:
        launcher.stop(run_dir, grace_s=0, wait=True)
    evts = read_all(run_dir / "events.jsonl")
    card = next(e for e in evts if e.get("kind") == "report")
    assert "skipped" in card.get("error", ""), card
    assert evts[-1]["status"] == "finished" and (run_dir / evts[-1]["output"] / "adapter_config.json").is_file()
    assert gone_at - t0 < 20, f"Stop took {gone_at - t0:.1f} s to end the worker answering its report card"
