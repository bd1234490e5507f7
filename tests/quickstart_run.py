"""A finished quickstart run for the slow chat / export tests: trained here (about 1.5 min on an
idle 2-core machine), or copied from WHETSTONE_QUICKSTART_RUN when that names a finished one."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import yaml

from conftest import REPO, run_worker


def quickstart_run(saves: Path, name: str = "quick") -> Path:
    saves.mkdir(parents=True, exist_ok=True)
    given = os.environ.get("WHETSTONE_QUICKSTART_RUN")
    if given:
        shutil.copytree(given, saves / name, ignore=shutil.ignore_patterns("worker.json", ".*", "merged", "eval"))
        return saves / name
    cfg = yaml.safe_load((REPO / "presets" / "quickstart.yaml").read_text())
    cfg["output"] = {"run_name": name, "saves_dir": str(saves)}
    (saves / name).mkdir()
    (saves / name / "config.yaml").write_text(yaml.safe_dump(cfg))
    r = run_worker(saves / name / "config.yaml", timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    return saves / name
