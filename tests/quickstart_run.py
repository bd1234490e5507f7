"""A finished quickstart run for the slow identity / chat / export tests, trained ONCE per test session
through the CLI exactly as the README says (`python app.py train presets/quickstart.yaml`, about
1.5 min on an idle 2-core machine), then copied for each test that needs one. WHETSTONE_QUICKSTART_RUN
may name an already finished run to copy instead."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from conftest import REPO

_trained: Path | None = None
CLI_OUTPUT: str = ""


def _train_once() -> Path:
    global _trained, CLI_OUTPUT
    if _trained is None:
        saves = Path(tempfile.mkdtemp(prefix="whetstone-quickstart-"))
        out = subprocess.run([sys.executable, "app.py", "train", "presets/quickstart.yaml",
                              "--set", f"output.saves_dir={saves}", "--set", "output.run_name=quick"],
                             cwd=REPO, capture_output=True, text=True, timeout=3600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        CLI_OUTPUT = out.stdout
        _trained = saves / "quick"
    return _trained


def quickstart_run(saves: Path, name: str = "quick") -> Path:
    saves.mkdir(parents=True, exist_ok=True)
    source = os.environ.get("WHETSTONE_QUICKSTART_RUN") or _train_once()
    shutil.copytree(source, saves / name, ignore=shutil.ignore_patterns("worker.json", ".*", "merged", "eval",
                                                                       "checkpoints"))
    return saves / name
