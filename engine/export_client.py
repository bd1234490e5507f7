"""Starting and following an export worker (engine/export_worker.py). Light module: stdlib + yaml.

    job = start_export(ExportConfig(run_dir="saves/quick", dtype="fp16", gguf=["q8_0"]))
    while job.running: job.poll(); print(job.progress, job.status)
    job.status == "finished" and job.out.is_dir()
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.events import EventReader
from engine.export_config import ExportConfig, ExportConfigError, save
from engine.paths import REPO


@dataclass
class ExportJob:
    cfg: ExportConfig
    proc: subprocess.Popen
    reader: EventReader
    status: str = "starting"
    progress: float = 0.0
    reason: str = ""
    checks: list[dict] = field(default_factory=list)
    result: dict = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    @property
    def out(self) -> Path:
        return self.cfg.output_path()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def poll(self) -> list[dict]:
        """Read the new events; update status, progress and checks."""
        new = self.reader.read_new()
        for e in new:
            kind = e.get("kind")
            if kind == "status":
                self.status = e.get("status", self.status)
                self.progress = float(e.get("progress", self.progress) or 0.0)
                self.reason = e.get("reason", self.reason)
                self.log.append(f"{self.status}" + (f": {e['what']}" if e.get("what") else ""))
                if self.status == "finished":
                    self.result = e
            elif kind == "check":
                self.checks.append(e)
            elif kind in ("error", "warning"):
                self.log.append(f"{kind}: {e.get('message', '')}")
                if kind == "error":
                    self.reason = e.get("message", self.reason)
        if not self.running and self.status not in ("finished", "failed") and not new:
            self.status, self.reason = "failed", self.reason or (
                f"the export worker ended (exit code {self.proc.returncode}) without finishing; nothing was written")
        return new

    def wait(self, timeout: Optional[float] = None) -> str:
        deadline = None if timeout is None else time.time() + timeout
        while self.running and (deadline is None or time.time() < deadline):
            self.poll()
            time.sleep(0.2)
        self.poll()
        self.poll()
        return self.status

    def stop(self, grace_s: float = 10.0) -> None:
        """Ask the worker to stop (it removes its temp folder), then kill it."""
        if not self.running:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def start_export(cfg: ExportConfig) -> ExportJob:
    """Validate, write the export config beside the target, and start the worker in the background."""
    problems = cfg.problems()
    if problems:
        raise ExportConfigError(problems)
    out = cfg.output_path()
    out.parent.mkdir(parents=True, exist_ok=True)
    cfg_path = save(cfg, out.parent / f".{out.name}.export.yaml")
    events = cfg.events_path()
    offset = events.stat().st_size if events.exists() else 0
    log = open(out.parent / f".{out.name}.export.log", "ab")
    env = dict(os.environ, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    proc = subprocess.Popen([sys.executable, "-m", "engine.export_worker", "--config", str(cfg_path)],
                            cwd=str(REPO), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    log.close()
    threading.Thread(target=proc.wait, daemon=True).start()  # no zombie in the app process
    return ExportJob(cfg, proc, EventReader(events, offset))
