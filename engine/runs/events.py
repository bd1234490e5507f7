"""Append-only JSONL events (DESIGN.md contract 4): the writer and the reader.

One JSON object per line, flushed per line, with ``t`` (unix seconds), ``step`` and ``kind``
(train, eval, status, error, ...) plus named metrics whose names carry their unit (the table in
engine.runs.metrics). Readers follow the file from their last byte offset and never re-read it whole;
engine.runs.progress folds what they read into a run's state.
"""
from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any, Optional

EVENTS_FILE = "events.jsonl"

# Status values written in `status` events, in the order a run goes through them.
STATUSES = ("starting", "loading", "running", "checkpoint", "finished", "stopped", "failed")
LIVE = ("starting", "loading", "running", "checkpoint")  # the worker is (or should be) at work
TERMINAL = ("finished", "stopped", "failed")             # the worker's last word for this attempt


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None  # JSON has no NaN/inf; a null says "not a number" without breaking readers
    return v


class EventWriter:
    """Writes one event per line straight to the file (no buffer) and flushes it to disk, so a reader sees every
    line whole. A line that does not fit (a full disk) is taken back whole: the file never ends in half a line
    that the next event would be glued to, and nothing is left waiting in a buffer to be written twice."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)

    def write(self, kind: str, step: int = 0, **fields: Any) -> dict:
        event = {"t": round(time.time(), 3), "step": int(step), "kind": kind}
        event.update({k: _clean(v) for k, v in fields.items()})
        line = memoryview((json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8"))
        start = os.fstat(self._fd).st_size
        try:
            while line:
                line = line[os.write(self._fd, line):]
        except OSError:
            try:
                os.ftruncate(self._fd, start)
            except OSError:
                pass
            raise
        try:
            os.fsync(self._fd)
        except OSError:
            pass
        return event

    def status(self, status: str, step: int = 0, **fields: Any) -> dict:
        return self.write("status", step, status=status, **fields)

    def error(self, message: str, step: int = 0, **fields: Any) -> dict:
        """A failed run's last word: what went wrong and what to change."""
        return self.write("error", step, message=message, **fields)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class EventReader:
    """Follows an events file from its last byte offset; a half-written last line waits for the next read.
    A file replaced or cut since the last read (a run folder deleted and made again under the same name) is
    read again from its start, and `generation` counts up: whoever folds the events starts afresh then."""

    def __init__(self, path: str | Path, offset: int = 0):
        self.path = Path(path)
        self.offset = offset
        self.generation = 0
        self._identity: Optional[tuple] = None  # (device, inode, first bytes) of the file being followed

    def read_new(self, max_bytes: Optional[int] = None) -> list[dict]:
        """The whole lines added since the last read (at most about max_bytes of them: call again for more)."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                head = f.read(64)  # the first event names its time: a new file under the same name differs here
                ident = (st.st_dev, st.st_ino, head)
                old = self._identity
                if old is not None and (old[:2] != ident[:2] or not head.startswith(old[2])
                                        or self.offset > st.st_size):
                    self.offset, self.generation = 0, self.generation + 1
                self._identity = ident
                f.seek(self.offset)
                chunk = f.read() if max_bytes is None else f.read(max_bytes)
                if max_bytes is not None and len(chunk) == max_bytes and b"\n" not in chunk:
                    chunk += f.readline()  # one line longer than max_bytes: read it whole
        except FileNotFoundError:
            return []
        if not chunk:
            return []
        end = chunk.rfind(b"\n")
        if end < 0:
            return []  # no complete line yet
        complete = chunk[: end + 1]
        self.offset += len(complete)
        out = []
        for line in complete.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue  # a corrupted line (e.g. disk full mid-write) never stops the reader
            if isinstance(obj, dict):
                out.append(obj)
        return out


def read_all(path: str | Path) -> list[dict]:
    """Every event of a finished run (used once per run, not per tick)."""
    return EventReader(path).read_new()
