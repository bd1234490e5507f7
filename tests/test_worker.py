"""The training worker as a user runs it: a real subprocess on a tiny model, its events, stop and resume."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from engine.runs.events import EventReader, read_all
from engine.runs.store import checkpoints, summarize
from tests.conftest import REPO, run_worker


def events_of(config_path):
    return read_all(config_path.parent / "events.jsonl")


def losses(evts):
    return {e["step"]: e["loss"] for e in evts if e["kind"] == "train"}


@pytest.mark.parametrize("method", ["lora", "full", "freeze"])
def test_training_lowers_the_loss_and_saves_a_loadable_output(make_config, method):
    cfg = make_config(method={"finetuning": method, "freeze": {"trainable_layers": 1}}, data={"max_samples": 8},
                      train={"max_steps": 20, "learning_rate": 0.02 if method == "lora" else 0.003})
    out = run_worker(cfg)
    assert out.returncode == 0, out.stderr[-3000:]
    evts = events_of(cfg)
    ls = losses(evts)
    assert len(ls) == 20
    first, last = sum(list(ls.values())[:3]) / 3, sum(list(ls.values())[-3:]) / 3
    assert last < first - 0.3, ls  # ~10.8 nats at random init; a broken update stays within noise
    train = [e for e in evts if e["kind"] == "train"]
    for key in ["loss", "lr", "grad_norm", "epoch", "tokens_per_s", "rss_gib"]:
        assert all(key in e for e in train), key
    assert all(e["tokens_per_s"] is None or e["tokens_per_s"] > 0 for e in train)
    # every number the worker logs is a metric of the one table the charts draw from (or bookkeeping)
    from engine.runs.metrics import BY_NAME
    logged = {k for e in train for k, v in e.items() if isinstance(v, float)} - {"t", "epoch"}
    assert logged <= set(BY_NAME), logged - set(BY_NAME)
    assert evts[-1]["kind"] == "status" and evts[-1]["status"] == "finished"
    run_dir = cfg.parent
    folder = run_dir / ("adapter" if method == "lora" else "model")
    assert (folder / "whetstone_config.yaml").is_file() and (folder / "chat_template.jinja").is_file()
    from engine.chat.generate import answer, load_run
    model, tok = load_run(run_dir)
    assert isinstance(answer(model, tok, [{"role": "user", "content": "hi"}], max_new_tokens=4), str)
    if method == "lora":
        from peft import PeftModel
        assert isinstance(model, PeftModel)


def test_sigterm_saves_a_checkpoint_and_resume_continues_the_same_curve(make_config, tmp_path):
    steps = 24
    common = dict(train={"max_steps": steps, "save_steps": 100, "learning_rate": 0.005})
    # An uninterrupted run with the same seed, as the reference curve.
    ref_cfg = make_config(output={"run_name": "reference"}, **common)
    assert run_worker(ref_cfg).returncode == 0
    ref = losses(events_of(ref_cfg))

    cfg = make_config(output={"run_name": "interrupted"}, **common)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reader = EventReader(cfg.parent / "events.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline:
        if any(e["kind"] == "train" and e["step"] >= 5 for e in reader.read_new()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 0
    evts = events_of(cfg)
    stop = [e for e in evts if e["kind"] == "status" and e["status"] == "stopped"]
    assert stop, evts[-3:]
    stopped_at = stop[-1]["step"]
    assert 5 <= stopped_at < steps
    assert checkpoints(cfg.parent)[-1].endswith(f"checkpoint-{stopped_at}")
    assert summarize(cfg.parent).status == "stopped"

    out = run_worker(cfg)  # started again on the same run: resumes
    assert out.returncode == 0, out.stderr[-3000:]
    evts = events_of(cfg)
    assert evts[-1]["status"] == "finished" and evts[-1]["step"] == steps
    got = losses(evts)
    assert sorted(got) == list(range(1, steps + 1)), "every step logged once across the two sessions"
    for step in range(stopped_at + 1, steps + 1):
        assert got[step] == pytest.approx(ref[step], rel=1e-3), (step, got[step], ref[step])


def test_events_are_whole_json_lines_while_the_worker_writes(make_config):
    cfg = make_config(train={"max_steps": 15})
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = cfg.parent / "events.jsonl"
    reader = EventReader(path)
    seen, raw_checks = [], 0
    while proc.poll() is None:
        seen += reader.read_new()
        if path.exists():
            text = path.read_bytes()
            complete = text[: text.rfind(b"\n") + 1]
            for line in complete.splitlines():
                obj = json.loads(line)  # every complete line parses, at any moment
                assert {"t", "step", "kind"} <= obj.keys()
            raw_checks += 1
        time.sleep(0.02)
    seen += reader.read_new()
    assert proc.returncode == 0 and raw_checks > 5
    assert [e for e in seen if e["kind"] == "train"], "the reader saw train events"
    assert seen == read_all(path), "following by offset gives exactly the whole file"
    ts = [e["t"] for e in seen]
    assert ts == sorted(ts)


def test_a_failing_run_ends_with_a_plain_error_event(make_config, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"instruction": "hi", "output": "hello"}\n{"instruction": "x"}\n')
    cfg = make_config(data={"datasets": [str(bad)]})
    out = run_worker(cfg)
    assert out.returncode == 1
    evts = events_of(cfg)
    err = [e for e in evts if e["kind"] == "error"][-1]
    # rows are numbered from 1, like the lines of the file (the bad row is the second line)
    assert "bad.jsonl, row 2 (line 2): has no `output`" in err["message"]
    assert evts[-1]["status"] == "failed"
    assert summarize(cfg.parent).reason == err["message"]


def test_second_worker_on_the_same_run_is_refused(make_config):
    cfg = make_config(train={"max_steps": 200})
    first = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        reader = EventReader(cfg.parent / "events.jsonl")
        deadline = time.time() + 120
        while time.time() < deadline and not reader.read_new():
            time.sleep(0.05)
        second = run_worker(cfg, timeout=60)
        assert second.returncode == 3 and "already training" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=120)


def test_sigkilled_worker_is_reported_failed_with_the_checkpoint_offered(make_config):
    cfg = make_config(train={"max_steps": 400, "save_steps": 2})
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reader = EventReader(cfg.parent / "events.jsonl")
    deadline = time.time() + 300
    while time.time() < deadline:
        if any(e.get("status") == "checkpoint" for e in reader.read_new()):
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    s = summarize(cfg.parent)
    assert s.status == "failed" and "died" in s.reason
    assert s.checkpoints, "the last checkpoint is offered for resume"
