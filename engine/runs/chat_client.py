"""The handle on a chat worker (engine.chat) that the UI and the CLI talk through. Light: stdlib only.

    client = ChatClient(ChatSource("run", run_dir="saves/quick"))
    info = client.start()                 # spawns the worker, waits until the model is loaded
    for piece in client.stream([{"role": "user", "content": "Who are you?"}]):
        print(piece, end="")
    client.unload()                       # the process ends; its memory is freed

One reply streams at a time per client (a lock serialises callers); ``cancel()`` ends the current
reply early. Side by side: ``stream(..., variant="base")`` answers with the adapter switched off.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

from engine.config.chat import ChatSource, GenerationParams, to_dict
from engine.runs.paths import saves_dir
from engine.runs.processes import python_module, spawn
from engine.runs.store import list_runs

LOAD_TIMEOUT_S = 600.0
REPLY_IDLE_TIMEOUT_S = 300.0  # no token for this long: the worker is stuck


class ChatError(RuntimeError):
    """Why the chat worker could not load or answer, in words."""


def training_run_alive(saves: Path) -> str:
    """The name of a training run at work in saves/, or ''."""
    for s in list_runs(saves):
        if s.going:
            return s.name
    return ""


class ChatClient:
    def __init__(self, source: ChatSource, saves: str | Path = "saves", log_path: Optional[Path] = None):
        self.source = source
        self.saves = saves_dir(str(saves))
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.info: dict = {}
        self._events: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.last_done: dict = {}

    # -- lifecycle -----------------------------------------------------------------------------
    @property
    def pid(self) -> Optional[int]:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = LOAD_TIMEOUT_S) -> dict:
        """Spawn the worker and load the source; returns the worker's ready event (with any warning)."""
        problem = self.source.problem()
        if problem:
            raise ChatError(problem)
        self.proc = spawn(python_module("engine.chat"), log=self.log_path, talk=True)
        threading.Thread(target=self._read, args=(self.proc,), daemon=True).start()
        self._send(op="load", source=to_dict(self.source), training_run=training_run_alive(self.saves))
        deadline = time.time() + timeout
        while True:
            e = self._next(deadline)
            if e["event"] == "ready":
                self.info = e
                return e
            if e["event"] == "error":
                self.unload()
                raise ChatError(e.get("message", "the chat worker failed to load the model"))

    def unload(self, grace_s: float = 10.0) -> None:
        """End the worker: ask it to quit, then kill its process group. All its memory is freed."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin:
                proc.stdin.write(json.dumps({"op": "cancel"}) + "\n" + json.dumps({"op": "quit"}) + "\n")
                proc.stdin.flush()
                proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything it started goes too
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()

    # -- talking -------------------------------------------------------------------------------
    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stdout:
            try:
                self._events.put(json.loads(line))
            except json.JSONDecodeError:
                continue
        self._events.put({"event": "exit", "code": proc.wait()})

    def _send(self, **cmd) -> None:
        if not self.alive:
            raise ChatError("no model is loaded (the chat worker is not running); press Load")
        try:
            self.proc.stdin.write(json.dumps(cmd, ensure_ascii=False) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise ChatError(f"the chat worker has gone ({e}); load the model again") from None

    def _next(self, deadline: float) -> dict:
        try:
            e = self._events.get(timeout=max(0.05, deadline - time.time()))
        except queue.Empty:
            raise ChatError("the chat worker did not answer in time") from None
        if e.get("event") == "exit":
            raise ChatError(f"the chat worker ended (exit code {e.get('code')}); see its log and load again")
        return e

    def stream(self, messages: list[dict], params: GenerationParams = GenerationParams(),
               variant: str = "tuned") -> Iterator[str]:
        """Yield the reply piece by piece. ``last_done`` then holds the counts and why it stopped."""
        bad = params.problems()
        if bad:
            raise ChatError("; ".join(bad))
        with self._lock:
            rid = f"r{next(self._ids)}"
            self._send(op="generate", id=rid, variant=variant, messages=messages, params=to_dict(params))
            while True:
                e = self._next(time.time() + REPLY_IDLE_TIMEOUT_S)
                if e.get("id") not in (rid, None):
                    continue  # a late event from an earlier, cancelled reply
                if e["event"] == "token":
                    yield e["text"]
                elif e["event"] == "done":
                    self.last_done = e
                    return
                elif e["event"] == "error":
                    raise ChatError(e.get("message", "generation failed"))

    def reply(self, messages: list[dict], params: GenerationParams = GenerationParams(),
              variant: str = "tuned") -> str:
        return "".join(self.stream(messages, params, variant)).strip()

    def cancel(self) -> None:
        if self.alive:
            try:
                self._send(op="cancel")
            except ChatError:
                pass
