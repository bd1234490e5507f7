"""A 2x2 sweep from the terminal while two workbench apps are open on the same saves folder: the real
CLI, the real apps and the real training worker on the tiny model. Each combination runs once, in the
grid's order, and the comparison at the end names the best run."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from engine.runs import queue as Q
from engine.runs.events import read_all
from engine.runs.queue_runner import RUNNER_LOG
from tests.conftest import REPO


def serve_app(saves: Path, log: Path) -> subprocess.Popen:
    """`python app.py` on a free port, up and answering. Gradio's own check that it can reach itself gives up
    after one 3-second request, which a starved machine can miss: such a start is tried again."""
    for attempt in range(3):
        proc = _start_app(saves, log)
        if wait_up(proc, log, retry=attempt < 2):
            return proc
    raise AssertionError("unreachable")


def _start_app(saves: Path, log: Path) -> subprocess.Popen:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, WHETSTONE_SAVES=str(saves), PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    proc.url = f"http://127.0.0.1:{port}/"
    return proc


def wait_up(proc: subprocess.Popen, log: Path, retry: bool) -> bool:
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            if retry and "localhost is not accessible" in log.read_text():
                return False
            raise AssertionError(log.read_text())
        try:
            urllib.request.urlopen(proc.url, timeout=2)
            return True
        except OSError:
            time.sleep(0.5)
    raise AssertionError("the app did not come up")


def test_a_2x2_sweep_beside_two_open_apps_runs_each_combination_once_in_order(tmp_path, tiny_model_dir):
    saves = tmp_path / "saves"
    saves.mkdir()
    base = tmp_path / "base.yaml"
    base.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_model_dir)},
        "data": {"datasets": ["identity"], "cutoff_len": 128, "val_size": 0.2},
        "method": {"finetuning": "lora", "lora": {"rank": 8, "alpha": 16}},
        "train": {"max_steps": 2, "batch_size": 4, "eval_steps": 2, "save_steps": 2},
        "output": {"saves_dir": str(saves)}}))
    logs = [tmp_path / f"app{i}.log" for i in range(2)]
    apps = []
    try:
        for log in logs:
            apps.append(serve_app(saves, log))
        out = subprocess.run([sys.executable, "app.py", "sweep", str(base), "--name", "lr",
                              "--grid", "train.learning_rate=1e-5,3e-2", "--grid", "method.lora.rank=4,8"],
                             cwd=REPO, capture_output=True, text=True, timeout=1200)
    finally:
        for app in apps:
            app.terminate()
            app.wait(30)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    names = ["lr-1-learning_rate_1e-5-rank_4", "lr-2-learning_rate_1e-5-rank_8",
             "lr-3-learning_rate_3e-2-rank_4", "lr-4-learning_rate_3e-2-rank_8"]

    # One progress line per run, in the grid's order, each finished.
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("[")]
    assert [ln.split("]")[0] + "]" for ln in lines] == ["[1/4]", "[2/4]", "[3/4]", "[4/4]"], out.stdout
    assert all(f"] {n}: finished" in ln for n, ln in zip(names, lines)), out.stdout

    # Each run started exactly once (one worker, one 'starting'), one after another, in order.
    firsts, lasts = [], []
    for n in names:
        events = read_all(saves / n / "events.jsonl")
        assert [e["status"] for e in events if e["kind"] == "status" and e["status"] == "starting"] == ["starting"], n
        assert "Another worker is already training" not in (saves / n / "stdout.log").read_text()
        firsts.append(events[0]["t"])
        lasts.append(events[-1]["t"])
    assert all(lasts[i] <= firsts[i + 1] for i in range(3)), (firsts, lasts)
    started = [ln.split("started ", 1)[1] for ln in (Q.folder(saves) / RUNNER_LOG).read_text().splitlines()
               if " started " in ln]
    assert started == names  # across every runner any process started
    assert Q.read(saves).entries == []
    assert sorted(p.name for p in saves.iterdir() if not p.name.startswith(".")) == names  # no stray runs

    # The comparison at the end: the grid's fields as columns, the best run marked, by its best eval loss.
    table = out.stdout[out.stdout.index("best  run"):]
    header = table.splitlines()[0]
    assert "method.lora.rank" in header and "train.learning_rate" in header and "best eval loss" in header
    best_eval = {n: min(e["eval_loss"] for e in read_all(saves / n / "events.jsonl") if e["kind"] == "eval")
                 for n in names}
    best = min(best_eval, key=best_eval.get)
    assert "3e-2" in best  # the learning rate that can move a random model in two steps
    marked = [ln for ln in table.splitlines() if ln.startswith("*")]
    assert len(marked) == 1 and f" {best} " in marked[0], table
    assert f"best: {best} (lowest best eval loss)" in out.stdout
    for log in logs:
        assert "Traceback" not in log.read_text()


@pytest.fixture(autouse=True)
def _no_queue_left(tmp_path):
    """Whatever happens, the sweep's waiting runs are cancelled so no runner lingers."""
    yield
    saves = tmp_path / "saves"
    if saves.is_dir():
        for e in Q.read(saves).entries:
            try:
                Q.cancel(saves, e.name)
            except Q.QueueError:
                pass
