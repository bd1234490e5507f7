"""A real small disk (a tmpfs this test mounts; CI runs as root) holding the saves folder: a checkpoint that
does not fit ends the run with an error that says so, with the numbers, its half-written files gone; Resume
finishes once there is room. Before Start, a run that cannot fit is refused with the numbers (CLI and UI),
and one that barely fits is warned about."""
from __future__ import annotations

import os
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from engine import config as C
from engine.preflight import disk
from engine.runs import launcher
from engine.runs.events import EventReader, read_all
from engine.runs.processes import wait_for_exit
from engine.runs.store import summarize
from tests.conftest import REPO, write_config
from tests.test_faults import wait_for_event
from webui import state as S
from webui.form import problems_markdown


@contextmanager
def small_disk(where: Path, size_mb: int):
    """A tmpfs of size_mb mounted at `where`, unmounted after; the test is skipped where mounting is refused."""
    where.mkdir(parents=True, exist_ok=True)
    out = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(where)],
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {out.stderr.strip() or out.returncode}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def _ballast(folder: Path, leave: int) -> Path:
    """Fill the disk until `leave` bytes are free (what else writes there: a download, another run)."""
    path = folder / "ballast.bin"
    with open(path, "wb") as f:
        f.write(b"\0" * max(0, os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize - leave))
    return path


def test_a_checkpoint_that_fills_the_disk_ends_the_run_in_words_and_resume_finishes(tmp_path, tiny_model_dir):
    with small_disk(tmp_path / "disk", 24) as mnt:
        saves = mnt / "saves"
        cfg_path = write_config(saves, tiny_model_dir, train={"max_steps": 9, "save_steps": 3, "save_total_limit": 1})
        run_dir = cfg_path.parent
        one = disk.estimate(C.load(cfg_path)).checkpoint_bytes
        # Room for one checkpoint and the events, not for the next one beside it (written before the old goes).
        ballast = _ballast(mnt, int(1.5 * one))
        out = subprocess.run([sys.executable, "-m", "engine.train", "--config", str(cfg_path)], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 1, out.stderr[-3000:]
        evts = read_all(run_dir / "events.jsonl")
        error = [e for e in evts if e["kind"] == "error"][-1]["message"]
        assert error.startswith("The disk is full: writing checkpoint-6 needed about"), error
        assert "The last complete checkpoint is checkpoint-3: Resume continues from it" in error, error
        assert evts[-1]["status"] == "failed"
        # The numbers: what the checkpoint needs (the one before it) and what is free now.
        whole = sum(p.stat().st_size for p in (run_dir / "checkpoints" / "checkpoint-3").iterdir())
        assert f"needed about {whole / 1e6:.1f} MB" in error, (whole, error)
        free_mb = float(error.split(" MB free")[0].rsplit(" ", 1)[-1])
        assert abs(free_mb * 1e6 - os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize) < 0.5e6, error
        assert free_mb * 1e6 < whole
        # On disk: the last whole checkpoint, nothing half-written, the log with the traceback at its end.
        assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["checkpoint-3"]
        assert "Traceback" in (out.stderr or "")
        s = summarize(run_dir)
        assert s.status == "failed" and s.reason == error

        ballast.unlink()  # room again: Resume (the UI's button, the CLI's --resume) finishes the run
        this_attempt = EventReader(run_dir / "events.jsonl", (run_dir / "events.jsonl").stat().st_size)
        launcher.resume(run_dir)
        wait_for_event(run_dir, lambda e: e.get("status") in ("finished", "failed"), timeout=600, reader=this_attempt)
        assert wait_for_exit(run_dir, 60)
        evts = read_all(run_dir / "events.jsonl")
        assert evts[-1]["status"] == "finished" and evts[-1]["step"] == 9, evts[-3:]
        assert any(e.get("what") == "resuming" and e.get("checkpoint") == "checkpoint-3" for e in evts)
        assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_start_is_refused_when_the_run_cannot_fit_and_warned_when_it_barely_does(tmp_path, tiny_model_dir):
    with small_disk(tmp_path / "disk", 16) as mnt:
        cfg = C.RunConfig()
        for k, v in {"model.name_or_path": str(tiny_model_dir), "data.datasets": ["identity"],
                     "train.max_steps": 100, "train.save_steps": 10, "output.saves_dir": str(mnt / "saves"),
                     "output.run_name": "big"}.items():
            cfg = C.replace(cfg, k, v)
        one = disk.estimate(cfg).checkpoint_bytes
        free = os.statvfs(mnt).f_bavail * os.statvfs(mnt).f_frsize
        fits = int(free / one) - 1          # kept checkpoints + the one being written fill 80-100% of the disk
        tight = C.replace(cfg, "train.save_total_limit", fits)
        assert disk.estimate(tight).tight and disk.estimate(tight).fits
        too_many = C.replace(cfg, "train.save_total_limit", fits + 2)

        # The Train tab says it before Start: a warning for the tight one, a problem for the one that cannot fit.
        assert "Disk space is tight" in problems_markdown(S.RunState(config=tight))
        shown = problems_markdown(S.RunState(config=too_many))
        assert shown.startswith("**Fix before starting:**") and "not enough disk space" in shown
        # Start (the one path of the UI and the CLI) refuses it with the numbers, and writes nothing.
        with pytest.raises(launcher.LaunchError, match=r"will write about .* MB .* has .* MB free"):
            launcher.start(too_many)
        cli = tmp_path / "big.yaml"
        cli.write_text(yaml.safe_dump(C.to_dict(too_many)))
        out = subprocess.run([sys.executable, "app.py", "train", str(cli)], cwd=REPO, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 2 and "not enough disk space" in out.stderr and "lower train.save_total_limit" \
            in out.stderr, out.stderr
        assert not (mnt / "saves" / "big").exists()
