"""The one fold from a run's events to its state: status, step and total, share done, times, the last
metrics, why it stopped or failed. Training runs, exports and evaluations are all folded here; the CLI's
progress bar, the runs list, the live charts, the export and evaluation clients and the model card read
it, and none folds status events on its own.

A status event of kind TERMINAL (finished, stopped, failed) is the worker's last word for that attempt;
a later 'starting' (a resume) begins a new attempt. What the events cannot tell, whether the worker is
still alive, is judged by `verdict`, from the process's liveness and the time of the last event.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional

from engine.runs.events import LIVE, TERMINAL

STALL_SECONDS = 300.0  # a live worker silent this long while training is reported "stalled"
STALL_ENV = "WHETSTONE_STALL_SECONDS"
DIED = ("The worker process died without a word (killed, or out of host memory). Resume from the last "
        "checkpoint, or lower batch_size / cutoff_len.")
STALLED = ("The worker is alive but has written nothing for {s:.0f} s: it may be hung (stuck disk or network, a "
           "paused process, a deadlock). Stop it and Resume from the last checkpoint.")


def stall_seconds() -> float:
    """The stall threshold: WHETSTONE_STALL_SECONDS when set to a positive number, else STALL_SECONDS."""
    import os
    try:
        v = float(os.environ.get(STALL_ENV, ""))
    except ValueError:
        return STALL_SECONDS
    return v if v > 0 else STALL_SECONDS


def _num(v) -> Optional[float]:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


@dataclass
class Progress:
    """What a run's events say so far. `add` takes new events in order (the reader's new lines)."""
    status: str = "unknown"
    step: int = 0
    total_steps: Optional[int] = None
    progress: float = 0.0                 # exports and evaluations: the share done, 0..1
    first_t: Optional[float] = None
    last_t: Optional[float] = None
    attempt_t: Optional[float] = None     # when the latest (re)start began: elapsed and ETA count from here
    attempt_step: int = 0
    detail: str = ""                      # what the last status said of itself: "loading data", a stop reason
    error: str = ""                       # why it failed, in plain words (the error event's message)
    traceback: str = ""
    last: dict = field(default_factory=dict)        # the latest train event's numbers
    final_loss: Optional[float] = None              # the last logged train loss
    final_loss_step: Optional[int] = None
    epoch: Optional[float] = None
    eval_loss: Optional[float] = None               # the last eval loss
    eval_step: Optional[int] = None
    notes: list[str] = field(default_factory=list)     # this attempt's warnings ("checkpoint-6 is damaged ...")
    best_eval_loss: Optional[float] = None          # the lowest eval loss so far (a sweep's comparison ranks by it)
    checks: list[dict] = field(default_factory=list)   # exports: each verification's figures
    result: dict = field(default_factory=dict)         # the terminal status event's own fields

    def add(self, events: list[dict]) -> "Progress":
        for e in events:
            t = _num(e.get("t"))
            if t is not None:
                self.first_t = t if self.first_t is None else self.first_t
                self.last_t = t
            step = e.get("step")
            if isinstance(step, int) and not isinstance(step, bool):
                self.step = max(self.step, step)
            if "progress" in e and _num(e["progress"]) is not None:
                self.progress = float(e["progress"])
            kind = e.get("kind")
            if kind == "train":
                self.last = {k: v for k, v in e.items() if _num(v) is not None and k not in ("t", "step")}
                if _num(e.get("loss")) is not None:
                    self.final_loss, self.final_loss_step = float(e["loss"]), int(step or 0)
                if _num(e.get("epoch")) is not None:
                    self.epoch = float(e["epoch"])
                if _num(e.get("total_steps")):
                    self.total_steps = int(e["total_steps"])
            elif kind == "eval" and _num(e.get("eval_loss")) is not None:
                self.eval_loss, self.eval_step = float(e["eval_loss"]), int(step or 0)
                if self.best_eval_loss is None or self.eval_loss < self.best_eval_loss:
                    self.best_eval_loss = self.eval_loss
            elif kind == "check":
                self.checks.append(e)
            elif kind == "warning" and e.get("message"):
                self.notes.append(str(e["message"]))
            elif kind == "error":
                self.error = str(e.get("message", ""))
                self.traceback = str(e.get("traceback", "") or "")
            elif kind == "status":
                self._status(e, t)
        return self

    def _status(self, e: dict, t: Optional[float]) -> None:
        self.status = str(e.get("status", self.status))
        what, reason = e.get("what"), e.get("reason")
        self.detail = f"{self.status} {what}" if what else str(reason or "")
        if _num(e.get("total_steps")):
            self.total_steps = int(e["total_steps"])
        if self.status == "starting":
            self.notes = []
        if self.status in ("starting", "loading"):
            self.error, self.traceback, self.result = "", "", {}
            if self.status == "starting" or self.attempt_t is None:
                self.attempt_t, self.attempt_step = t, self.step
        elif self.status in TERMINAL:
            self.result = e
            if self.status == "failed" and not self.error:
                self.error = str(reason or "")

    @property
    def ended(self) -> bool:
        """The worker has said its last word for this attempt (a terminal status is final)."""
        return self.status in TERMINAL

    def going(self, alive: bool, worker_started: Optional[float] = None) -> bool:
        """Whether the run is at work: its worker lives and has not said its last word. A worker that has
        (finished, stopped, failed) and is only exiting is not going; one started after that last word
        (worker_started, from worker.json) is a new attempt, a resume that has not written yet, and is."""
        if not alive:
            return False
        if not self.ended:
            return True
        return worker_started is not None and self.last_t is not None and worker_started > self.last_t

    def verdict(self, alive: bool, now: Optional[float] = None, grace_s: float = 0.0,
                began: bool = False) -> tuple[str, str]:
        """(status, why it failed or stalled) once the worker's liveness is known: a live status whose worker
        is gone is 'failed' (it died without a word), a live worker silent for too long is 'stalled'.
        began: a worker has opened the events file (so silence and no process mean it died at once)."""
        now = time.time() if now is None else now
        reason = self.error
        if self.status in LIVE + ("unknown",) and not alive:
            if self.status == "unknown" and self.last_t is None and not began:
                return self.status, reason  # nothing started yet: a folder being made, not a death
            if self.last_t is not None and now - self.last_t <= grace_s:
                return self.status, reason  # its worker file may not be written yet
            return "failed", self.error or DIED
        if alive and self.status in ("running", "checkpoint") and self.last_t is not None and \
                now - self.last_t > stall_seconds():
            return "stalled", STALLED.format(s=now - self.last_t)
        return self.status, reason


def fold(events: list[dict]) -> Progress:
    return Progress().add(events)
