"""Starting and following an export worker (engine.export). Light: stdlib + yaml.

    job = start_export(ExportConfig(run_dir="saves/quick", dtype="fp16", gguf=["q8_0"]))
    while job.running: job.poll(); print(job.progress, job.status)
    job.status == "finished" and job.out.is_dir()
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.config.export import ExportConfig, ExportConfigError, save
from engine.runs.events import EventReader
from engine.runs.processes import python_module, spawn
from engine.runs.progress import Progress


@dataclass
class ExportJob:
    cfg: ExportConfig
    proc: subprocess.Popen
    reader: EventReader
    state: Progress = field(default_factory=lambda: Progress(status="starting"))
    log: list[str] = field(default_factory=list)
    exited_early: str = ""  # the worker ended without its last word: why, in words

    @property
    def status(self) -> str:
        return "failed" if self.exited_early else self.state.status

    @property
    def progress(self) -> float:
        return self.state.progress

    @property
    def reason(self) -> str:
        return self.exited_early or self.state.error

    @property
    def checks(self) -> list[dict]:
        return self.state.checks

    @property
    def result(self) -> dict:
        return self.state.result if self.state.status == "finished" else {}

    @property
    def out(self) -> Path:
        return self.cfg.output_path()

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def poll(self) -> list[dict]:
        """Read the new events into the job's state (engine.runs.progress) and its log."""
        new = self.reader.read_new()
        self.state.add(new)
        for e in new:
            if e.get("kind") == "status":
                self.log.append(f"{e.get('status')}" + (f": {e['what']}" if e.get("what") else ""))
            elif e.get("kind") in ("error", "warning"):
                self.log.append(f"{e['kind']}: {e.get('message', '')}")
        if not self.running and not self.state.ended and not new:
            self.exited_early = self.state.error or (
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
    proc = spawn(python_module("engine.export", "--config", str(cfg_path)), log=out.parent / f".{out.name}.export.log")
    return ExportJob(cfg, proc, EventReader(events, offset))
