"""Following a run while it trains: new events only, kept as compact in-memory series.

A `RunFollower` belongs to one browser session (or one compare view); what it follows is a `Feed`, one per
run for the whole app: it reads only the lines appended to events.jsonl since its last byte offset
(engine.runs.events.EventReader) and folds them into a `RunSeries` (the run's state plus its numbers). Every
page watching a run shares that one series: a page load, or a tenth page, neither re-reads the file nor holds
another copy of the run's history. A feed lives while some follower holds it (weakly registered). The charts
are rebuilt from those short lists, never by re-parsing the file.

One thread writes a series at a time (the feed's lock); pages read it without the lock, so a train event is
appended column by column with `train_steps` last, and a new column (a metric first logged) arrives as a new dict:
whoever reads `len(train_steps)` points finds them in every column.
"""
from __future__ import annotations

import math
import os
import threading
import weakref
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from engine.runs.events import EVENTS_FILE, EventReader
from engine.runs.metrics import METRICS, split_rank
from engine.runs.progress import Progress

LOG_TAIL_BYTES = 8192
POLL_BYTES = 1 << 20
SMOOTHING = 0.6  # TensorBoard-style exponential moving average weight of the smoothed loss
KNOWN = {m.name for m in METRICS}
NAN = float("nan")


def _num(v) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else NAN


def _column(n: int) -> array:
    return array("d", [NAN]) * n


@dataclass
class RunSeries(Progress):
    """A run's state (the one fold, engine.runs.progress) plus the numbers of its train and eval events in
    the order they were logged: one column per metric of engine.runs.metrics the run has logged (per-rank
    columns included), each a packed array of floats with NaN where a step did not log it (8 bytes a value:
    a 40,000-step run's series is ~2.4 MB, where lists of Python floats took 12.5), and the smoothed loss
    kept up to date as steps arrive (a tick never re-smooths the whole run)."""
    train_steps: array = field(default_factory=lambda: array("q"))
    train_t: array = field(default_factory=lambda: array("d"))
    metrics: dict[str, array] = field(default_factory=dict)
    loss_smoothed: array = field(default_factory=lambda: array("d"))  # debiased EMA of the loss; NaN where none
    eval_steps: list[int] = field(default_factory=list)
    eval_losses: list[Optional[float]] = field(default_factory=list)
    samples: list[dict] = field(default_factory=list)  # grpo / ppo: the latest sampled completions and rewards
    samples_step: Optional[int] = None
    _ema: tuple[float, float] = (0.0, 0.0)

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
                self.eval_losses.append(float(v) if isinstance(v, (int, float)) else None)
                self.eval_steps.append(int(e.get("step") or 0))
        return self

    def _add_train(self, e: dict) -> None:
        n = len(self.train_steps)
        new = [k for k, v in e.items()
               if k not in self.metrics and split_rank(k)[0] in KNOWN and not math.isnan(_num(v))]
        if new:  # a metric first logged now: a new dict, so no reader iterates one that grows
            self.metrics = {**self.metrics, **{k: _column(n) for k in new}}
        for k, col in self.metrics.items():
            col.append(_num(e.get(k)))
        loss = _num(e.get("loss"))
        if not math.isnan(loss):
            avg, norm = self._ema
            avg, norm = SMOOTHING * avg + (1 - SMOOTHING) * loss, SMOOTHING * norm + (1 - SMOOTHING)
            self._ema = (avg, norm)
            self.loss_smoothed.append(avg / norm)
        else:
            self.loss_smoothed.append(NAN)
        self.train_t.append(float(e.get("t") or 0.0))
        self.train_steps.append(int(e.get("step") or 0))  # last: the point is complete once it is counted

    def has(self, metric: str) -> bool:
        return metric in self.metrics

    def values(self, metric: str) -> list[Optional[float]]:
        """A metric at every logged step, None where a step did not log it."""
        return [None if math.isnan(v) else v for v in self.metrics.get(metric, _column(len(self.train_steps)))]

    def latest(self, metric: str) -> Optional[float]:
        col = self.metrics.get(metric, ())
        for i in range(len(col) - 1, -1, -1):
            if not math.isnan(col[i]):
                return col[i]
        return None

    def other_ranks(self, metric: str) -> list[str]:
        """The per-rank columns of one metric, rank 1 first."""
        keys = [k for k in self.metrics if split_rank(k) != (k, 0) and split_rank(k)[0] == metric]
        return sorted(keys, key=lambda k: split_rank(k)[1])


class Feed:
    """One run's events, folded once for every follower of the run (see the module's docstring)."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self.reader = EventReader(run_dir / EVENTS_FILE)
        self.series = RunSeries()
        self.version = 0  # counts up whenever the series took in new events (or started afresh)
        self._lock = threading.Lock()

    def poll(self) -> int:
        """Take in the lines written since anyone last polled; the series' version after. A long history is
        folded a megabyte at a time, so a page load never holds the whole file's events at once."""
        with self._lock:
            while True:
                offset, generation = self.reader.offset, self.reader.generation
                events = self.reader.read_new(max_bytes=POLL_BYTES)
                if self.reader.generation != generation:  # the file was made again: a new run, read afresh
                    self.series, self.version = RunSeries(), self.version + 1
                if events:
                    self.series.add(events)
                    self.version += 1
                if self.reader.offset == offset:
                    return self.version

    def __deepcopy__(self, memo) -> "Feed":
        return self  # shared by design: a copied session state follows the same run


_FEEDS: "weakref.WeakValueDictionary[str, Feed]" = weakref.WeakValueDictionary()
_FEEDS_LOCK = threading.Lock()


def feed(run_dir: str | Path) -> Feed:
    """The app's one feed of this run, made on first use; gone once no follower holds it."""
    run_dir = Path(run_dir)
    key = os.path.realpath(run_dir)
    with _FEEDS_LOCK:
        f = _FEEDS.get(key)
        if f is None:
            f = _FEEDS[key] = Feed(run_dir)
        return f


@dataclass
class RunFollower:
    """One session's view of a run: the shared feed, the version of it this session last took, and a cheap
    view of the end of the run's log (per session: each page shows the log when it changed for that page)."""
    run_dir: Path
    feed: Feed
    seen: int = -1
    _log_size: int = -1

    @classmethod
    def of(cls, run_dir: str | Path) -> "RunFollower":
        run_dir = Path(run_dir)
        return cls(run_dir=run_dir, feed=feed(run_dir))

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def series(self) -> RunSeries:
        return self.feed.series

    @property
    def reader(self) -> EventReader:
        return self.feed.reader

    def poll(self) -> bool:
        """Take in what the run wrote since this session last asked; True when there was anything (read by
        whichever session asked first, folded once for all)."""
        version = self.feed.poll()
        changed, self.seen = version != self.seen, version
        return changed

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
