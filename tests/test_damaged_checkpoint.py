"""A damaged checkpoint (a bad copy, a disk fault) on a real run: resume skips it with a note that names the
file and finishes from the one before; only when no checkpoint is whole does the run fail, naming the files.
Chat and Export say which file is damaged and which checkpoint to use instead."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from engine.runs import integrity
from engine.runs.events import read_all
from engine.runs.store import checkpoints, summarize
from tests.conftest import REPO
from tests.test_faults import is_checkpoint, wait_for_event
from webui.live import RunFollower
from webui.progress import progress_html


def _truncate(path: Path, keep: float = 0.5) -> None:
    with open(path, "r+b") as f:
        f.truncate(int(path.stat().st_size * keep))


def test_a_truncated_newest_checkpoint_is_skipped_and_the_run_finishes(make_config):
    cfg = make_config(train={"max_steps": 12, "save_steps": 3, "save_total_limit": 2})
    run_dir = cfg.parent
    proc = subprocess.Popen([sys.executable, "-m", "engine.train", "--config", str(cfg)], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for_event(run_dir, lambda e: is_checkpoint(e) and e["step"] >= 3)
        proc.send_signal(signal.SIGTERM)  # stop: a checkpoint at the current step, then exit
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    found = [Path(c) for c in checkpoints(run_dir)]
    assert len(found) == 2 and summarize(run_dir).status == "stopped", found
    older, newest = found
    assert integrity.problems(newest, resumable=True) == []  # whole, as written

    # A bad copy: the newest checkpoint's weights cut in half, and (for now) the older one's optimizer too.
    _truncate(newest / "adapter_model.safetensors")
    backup = run_dir.parent / "optimizer.pt.whole"
    shutil.copy(older / "optimizer.pt", backup)
    _truncate(older / "optimizer.pt", 0.3)
    out = subprocess.run([sys.executable, "app.py", "train", "--resume", str(run_dir)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 1
    said = out.stderr
    assert "No checkpoint of this run can be resumed" in said, said[-2000:]
    assert f"{newest.name} is damaged (adapter_model.safetensors truncated" in said
    assert f"{older.name} is damaged (optimizer.pt truncated" in said
    assert [Path(c) for c in checkpoints(run_dir)] == found  # nothing moved or deleted: the user decides

    # The whole optimizer state copied back: resume skips the damaged newest checkpoint and finishes.
    shutil.copy(backup, older / "optimizer.pt")
    out = subprocess.run([sys.executable, "app.py", "train", "--resume", str(run_dir)], cwd=REPO,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    note = f"{newest.name} is damaged (adapter_model.safetensors truncated"
    assert f"warning: {note}" in out.stdout and f"resuming from {older.name}" in out.stdout, out.stdout[-2000:]
    evts = read_all(run_dir / "events.jsonl")
    assert any(e.get("what") == "resuming" and e.get("checkpoint") == older.name
               and e.get("skipped") == [newest.name] for e in evts)
    assert evts[-1]["status"] == "finished" and evts[-1]["step"] == 12
    assert (run_dir / "checkpoints" / f"damaged-{newest.name}").is_dir()  # set aside, not offered again
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()
    assert integrity.problems(run_dir / "adapter") == []
    # The Train tab shows the note on the run it finished.
    follower = RunFollower.of(run_dir)
    follower.poll()
    html = progress_html(follower.name, follower.series, alive=False)
    assert "data-status='finished'" in html and note in html


def test_damaged_files_are_named_in_plain_words(tmp_path):
    import json
    import struct
    import zipfile
    ck = tmp_path / "checkpoint-4"
    ck.mkdir()
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    (ck / "adapter_model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 16)
    with zipfile.ZipFile(ck / "optimizer.pt", "w") as z:
        z.writestr("archive/data.pkl", b"x" * 1000)
    shutil.copy(ck / "optimizer.pt", ck / "scheduler.pt")
    (ck / "trainer_state.json").write_text('{"global_step": 4}')
    assert integrity.problems(ck, resumable=True) == []
    _truncate(ck / "adapter_model.safetensors", 0.9)
    (ck / "trainer_state.json").write_text('{"global_st')
    (ck / "scheduler.pt").unlink()
    whole = 8 + len(header) + 16
    cut = f"adapter_model.safetensors truncated ({int(whole * 0.9)} bytes of {whole} bytes)"
    assert integrity.problems(ck, resumable=True) == [
        "scheduler.pt missing", cut, "trainer_state.json damaged (not valid JSON; 11 bytes)"]
    assert integrity.problems(ck) == [cut, "trainer_state.json damaged (not valid JSON; 11 bytes)"]  # no resume needs
