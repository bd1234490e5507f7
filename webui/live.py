"""Following a run while it trains: new events only, kept as compact in-memory series.

A `RunFollower` belongs to one browser session. Each tick it reads only the lines appended to
events.jsonl since its last byte offset (engine.runs.events.EventReader) and folds them into a
`RunSeries` (the run's state plus its numbers); the charts are rebuilt from those short lists, never by
re-parsing the file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.runs.events import EVENTS_FILE, EventReader
from engine.runs.metrics import METRICS, split_rank
from engine.runs.progress import Progress

LOG_TAIL_BYTES = 8192
POLL_BYTES = 1 << 20


@dataclass
class RunSeries(Progress):
    """A run's state (the one fold, engine.runs.progress) plus the numbers of its train and eval events in
    the order they were logged: one column per metric of engine.runs.metrics, per-rank columns included."""
    train_steps: list[int] = field(default_factory=list)
    train_t: list[float] = field(default_factory=list)
    metrics: dict[str, list[Optional[float]]] = field(default_factory=lambda: {m.name: [] for m in METRICS})
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[Optional[float]] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # grpo / ppo: the latest sampled completions and rewards
    samples_step: Optional[int] = None

    def add(self, events: list[dict]) -> "RunSeries":
        super().add(events)
        for e in events:
            kind = e.get("kind")
            if kind == "train":
                self._add_train(e)
            elif kind == "samples" and isinstance(e.get("rows"), list):
                self.samples = [r for r in e["rows"] if isinstance(r, dict)]
                self.samples_step = int(e.get("step") or 0)
            elif kind == "eval":
                v = e.get("eval_loss")
                self.eval_steps.append(int(e.get("step") or 0))
                self.eval_losses.append(float(v) if isinstance(v, (int, float)) else None)
        return self

    def _add_train(self, e: dict) -> None:
        n = len(self.train_steps)
        self.train_steps.append(int(e.get("step") or 0))
        self.train_t.append(float(e.get("t") or 0.0))
        for k in e:
            name, rank = split_rank(k)
            if rank and k not in self.metrics:  # another rank's reading, first seen now
                self.metrics[k] = [None] * n
        for k, col in self.metrics.items():
            v = e.get(k)
            col.append(float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None)

    def has(self, metric: str) -> bool:
        return any(v is not None for v in self.metrics.get(metric, ()))

    def other_ranks(self, metric: str) -> list[str]:
        """The per-rank columns of one metric, rank 1 first."""
        keys = [k for k in self.metrics if split_rank(k) != (k, 0) and split_rank(k)[0] == metric]
        return sorted(keys, key=lambda k: split_rank(k)[1])


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
        """Take in the lines written since the last poll; True when there were any. A long run's history is
        folded a megabyte at a time, so a page load never holds the whole file's events at once."""
        got = False
        while True:
            offset = self.reader.offset
            events = self.reader.read_new(max_bytes=POLL_BYTES)
            self.series.add(events)
            got = got or bool(events)
            if self.reader.offset == offset:
                return got

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
