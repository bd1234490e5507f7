"""Two processes on CPU (gloo), launched the way the launcher launches them, train like one process
with the same global batch; rank 0 alone writes events and checkpoints; stop and resume work."""
import os
import subprocess
import time

import pytest

from engine import config as C
from engine.runs import launcher, metrics, torchrun as distributed
from engine.runs.events import read_all
from engine.runs.processes import worker_alive
from engine.runs.store import checkpoints, summarize
from tests.conftest import REPO, run_worker, write_config

STEPS = 12
TRAIN = {"max_steps": STEPS, "learning_rate": 0.005, "save_steps": 6, "logging_steps": 1}
DDP2 = {"nproc_per_node": 2, "strategy": "ddp"}


def losses(run_dir):
    return {e["step"]: e["loss"] for e in read_all(run_dir / "events.jsonl") if e["kind"] == "train"}


def launch(config_path, timeout=900):
    """Exactly what the launcher spawns (argv from worker_command, its own process group)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(launcher.worker_command(config_path), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env=env, start_new_session=True)


@pytest.fixture(scope="module")
def single_reference(tmp_path_factory, tiny_model_dir):
    """One process, batch 4: the curve two processes of batch 2 must reproduce."""
    tmp = tmp_path_factory.mktemp("single")
    cfg = write_config(tmp, tiny_model_dir, train=dict(TRAIN, batch_size=4), output={"run_name": "single"})
    out = run_worker(cfg)
    assert out.returncode == 0, out.stderr[-3000:]
    return losses(cfg.parent)


def test_the_launcher_uses_torchrun_only_when_more_than_one_process_is_asked_for(make_config):
    one = launcher.worker_command(make_config())
    assert "torch.distributed.run" not in one and one[1:4] == ["-m", "engine.train", "--config"]
    two = launcher.worker_command(make_config(distributed=DDP2))
    assert two[1:3] == ["-m", "torch.distributed.run"]
    assert "--nproc_per_node=2" in two and "--nnodes=1" in two and "--standalone" in two
    assert two[-4:] == ["-m", "engine.train", "--config", str(make_config(distributed=DDP2))]
    assert f"--shutdown-timeout={distributed.SHUTDOWN_GRACE_S}" in two


def test_two_ddp_processes_follow_the_single_process_curve_and_write_once(make_config, single_reference):
    cfg = make_config(train=dict(TRAIN, batch_size=2), distributed=DDP2, output={"run_name": "ddp"})
    out = launch(cfg)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    run_dir = cfg.parent
    evts = read_all(run_dir / "events.jsonl")
    train = [e for e in evts if e["kind"] == "train"]
    assert [e["step"] for e in train] == list(range(1, STEPS + 1)), "each step once: only rank 0 writes"
    got = losses(run_dir)
    for step in range(1, STEPS + 1):
        # measured: equal to 1e-6 (the same examples form each global batch; gradients are averaged)
        assert got[step] == pytest.approx(single_reference[step], rel=1e-4), (step, got, single_reference)
    assert got[STEPS] < got[1] - 0.3, "and it learns"
    # One set of charts: rank 0's memory under the usual name, rank 1's beside it.
    assert all(e["rss_gib"] > 0 and e["rss_gib_rank1"] > 0 for e in train)
    assert metrics.ranks(train[-1]) == [0, 1]
    assert [e["status"] for e in evts if e["kind"] == "status"].count("finished") == 1
    assert not [e for e in evts if e["kind"] == "error"]
    resolved = [e for e in evts if e["kind"] == "resolved"]
    assert len(resolved) == 1 and resolved[0]["world_size"] == 2 and resolved[0]["effective_batch"] == 4
    saved = [e["checkpoint"] for e in evts if e.get("status") == "checkpoint"]
    assert saved == ["checkpoint-6", "checkpoint-12"], "each checkpoint saved (and announced) once"
    assert [os.path.basename(c) for c in checkpoints(run_dir)] == saved
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert summarize(run_dir).status == "finished"


def _wait_for_step(run_dir, step, timeout=600):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if any(e["kind"] == "train" and e["step"] >= step for e in read_all(run_dir / "events.jsonl")):
            return
        time.sleep(0.2)
    raise AssertionError(f"no train event at step {step}: {(run_dir / 'stdout.log').read_text()[-3000:]}")


def _wait_gone(run_dir, timeout=600):
    deadline = time.time() + timeout
    while worker_alive(run_dir) and time.time() < deadline:
        time.sleep(0.2)
    assert not worker_alive(run_dir)


def test_stop_checkpoints_once_and_resume_under_two_processes_finishes_the_curve(tmp_path, tiny_model_dir,
                                                                                 single_reference):
    cfg_path = write_config(tmp_path, tiny_model_dir, train=dict(TRAIN, batch_size=2, save_steps=100),
                            distributed=DDP2, output={"run_name": "stopped"})
    cfg = C.load(cfg_path)
    cfg_path.unlink()
    cfg_path.parent.rmdir()
    run_dir = launcher.start(cfg)  # what the Train button does
    _wait_for_step(run_dir, 3)
    assert launcher.stop(run_dir, wait=True)  # SIGTERM to torchrun's group: every rank
    time.sleep(1)  # torchrun itself exits just after its ranks
    evts = read_all(run_dir / "events.jsonl")
    stops = [e for e in evts if e.get("status") == "stopped"]
    assert len(stops) == 1, (run_dir / "stdout.log").read_text()[-3000:]
    at = stops[0]["step"]
    assert 3 <= at < STEPS
    assert [os.path.basename(c) for c in checkpoints(run_dir)] == [f"checkpoint-{at}"]
    assert not [e for e in evts if e["kind"] == "error"]
    log = (run_dir / "stdout.log").read_text()
    assert "[default0]:" in log and "[default1]:" in log, "each rank's lines are marked with its rank"
    assert {p.name for p in (run_dir / "rank-logs").glob("*/attempt_0/*")} == {"0", "1"}

    launcher.resume(run_dir)
    _wait_gone(run_dir)
    evts = read_all(run_dir / "events.jsonl")
    assert evts[-1]["status"] == "finished" and evts[-1]["step"] == STEPS, evts[-3:]
    got = losses(run_dir)
    assert sorted(got) == list(range(1, STEPS + 1)), "every step logged once across the two sessions"
    for step in range(at + 1, STEPS + 1):
        assert got[step] == pytest.approx(single_reference[step], rel=1e-3), (step, got[step])


def _pid_of_rank(run_dir, rank):
    """The process torchrun started as `rank` for this run (found by its command line and RANK)."""
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            env = open(f"/proc/{pid}/environ", "rb").read()
        except OSError:
            continue
        if str(run_dir).encode() in cmdline and b"engine.train" in cmdline and f"\0RANK={rank}\0".encode() in env:
            return int(pid)
    return None


def test_a_rank_killed_midway_ends_the_run_as_failed_in_plain_words(tmp_path, tiny_model_dir):
    import signal
    cfg_path = write_config(tmp_path, tiny_model_dir, train=dict(TRAIN, max_steps=400, batch_size=2, save_steps=3),
                            distributed=DDP2, output={"run_name": "killed"})
    cfg = C.load(cfg_path)
    cfg_path.unlink()
    cfg_path.parent.rmdir()
    run_dir = launcher.start(cfg)
    _wait_for_step(run_dir, 4)
    os.kill(_pid_of_rank(run_dir, 1), signal.SIGKILL)  # e.g. the kernel's OOM killer
    _wait_gone(run_dir, timeout=180)
    s = summarize(run_dir)
    assert s.status == "failed" and s.reason.startswith("Another training process"), s.reason
    assert s.checkpoints, "the last checkpoint is offered for resume"
