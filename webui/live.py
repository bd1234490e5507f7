"""Following a run while it trains: new events only, kept as compact in-memory series.

A `RunFollower` belongs to one browser session. Each tick it reads only the lines appended to
events.jsonl since its last byte offset (engine.events.EventReader) and appends their numbers to a
`RunSeries`; the charts are rebuilt from those short lists, never by re-parsing the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.events import EVENTS_FILE, EventReader

TRAIN_METRICS = ("loss", "lr", "grad_norm", "tokens_per_s", "rss_gib", "vram_alloc_gib", "vram_reserved_gib")
ENDED = ("finished", "stopped", "failed")
LOG_TAIL_BYTES = 8192


@dataclass
class RunSeries:
    """The numbers of one run, in the order they were logged."""
    train_steps: list[int] = field(default_factory=list)
    train_t: list[float] = field(default_factory=list)
    metrics: dict[str, list[Optional[float]]] = field(default_factory=lambda: {m: [] for m in TRAIN_METRICS})
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[Optional[float]] = field(default_factory=list)
    status: str = "unknown"
    total_steps: Optional[int] = None
    step: int = 0
    first_t: Optional[float] = None
    last_t: Optional[float] = None
    attempt_t: Optional[float] = None  # when the latest (re)start began: elapsed and ETA count from here
    attempt_step: int = 0
    detail: str = ""  # what a status event said about itself: "loading tokenizer and model", a stop reason
    error: str = ""
    traceback: str = ""

    def add(self, events: list[dict]) -> None:
        for e in events:
            t = e.get("t")
            if isinstance(t, (int, float)):
                self.first_t = t if self.first_t is None else self.first_t
                self.last_t = t
            step = e.get("step")
            if isinstance(step, int):
                self.step = max(self.step, step)
            kind = e.get("kind")
            if kind == "train":
                self.train_steps.append(int(step or 0))
                self.train_t.append(float(t or 0.0))
                for m in TRAIN_METRICS:
                    v = e.get(m)
                    self.metrics[m].append(float(v) if isinstance(v, (int, float)) else None)
                self._add_other_ranks(e)
            elif kind == "eval":
                v = e.get("eval_loss")
                self.eval_steps.append(int(step or 0))
                self.eval_loss.append(float(v) if isinstance(v, (int, float)) else None)
            elif kind == "status":
                self.status = str(e.get("status", self.status))
                what, reason = e.get("what"), e.get("reason")
                self.detail = f"{self.status} {what}" if what else str(reason or "")
                if e.get("total_steps"):
                    self.total_steps = int(e["total_steps"])
                if self.status in ("starting", "loading"):
                    self.error, self.traceback = "", ""
                    if self.status == "starting" or self.attempt_t is None:
                        self.attempt_t, self.attempt_step = t, self.step
            elif kind == "error":
                self.error = str(e.get("message", ""))
                self.traceback = str(e.get("traceback", "") or "")

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def has(self, metric: str) -> bool:
        return any(v is not None for v in self.metrics.get(metric, ()))

    def _add_other_ranks(self, e: dict) -> None:
        """Multi-process runs: rank r's memory arrives as e.g. `vram_alloc_gib_rank1` in rank 0's event."""
        n = len(self.train_steps)
        for k, v in e.items():
            if "_gib_rank" in k and k not in self.metrics:
                self.metrics[k] = [None] * (n - 1)
        for k, col in self.metrics.items():
            if "_gib_rank" in k:
                v = e.get(k)
                col.append(float(v) if isinstance(v, (int, float)) else None)

    def other_ranks(self, metric: str) -> list[str]:
        """The per-rank columns of one memory metric, rank 1 first."""
        keys = [k for k in self.metrics if k.startswith(metric + "_rank")]
        return sorted(keys, key=lambda k: int(k.rsplit("rank", 1)[1]))


@dataclass
class RunFollower:
    """One run's events followed from a byte offset, plus a cheap view of the end of its log."""
    run_dir: Path
    reader: EventReader
    series: RunSeries = field(default_factory=RunSeries)
    _log_size: int = -1

    @classmethod
    def of(cls, run_dir: str | Path) -> "RunFollower":
        run_dir = Path(run_dir)
        return cls(run_dir=run_dir, reader=EventReader(run_dir / EVENTS_FILE))

    @property
    def name(self) -> str:
        return self.run_dir.name

    def poll(self) -> bool:
        """Take in the lines written since the last poll; True when there were any."""
        events = self.reader.read_new()
        self.series.add(events)
        return bool(events)

    def log_tail(self, force: bool = False) -> Optional[str]:
        """The last few KB of stdout.log, or None when it has not grown since last asked (read from the end)."""
        path = self.run_dir / "stdout.log"
        try:
            size = os.path.getsize(path)
        except OSError:
            return None if not force else ""
        if size == self._log_size and not force:
            return None
        self._log_size = size
        with open(path, "rb") as f:
            f.seek(max(0, size - LOG_TAIL_BYTES))
            data = f.read()
        text = data.decode("utf-8", errors="replace").replace("\r", "\n")
        if size > LOG_TAIL_BYTES:
            text = text.split("\n", 1)[-1]  # drop the partial first line
        lines = [ln for ln in text.split("\n") if ln.strip()]
        return "\n".join(lines[-40:])


@dataclass
class Watch:
    """What one browser session is looking at: the current run and any runs overlaid on its loss chart."""
    current: Optional[RunFollower] = None
    overlays: dict[str, RunFollower] = field(default_factory=dict)
    table: list[list] = field(default_factory=list)  # the runs list as last read from saves/

    def poll(self) -> bool:
        changed = False
        for f in [self.current, *self.overlays.values()]:
            if f is not None:
                changed = f.poll() or changed
        return changed
