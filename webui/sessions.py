"""Browser sessions: which pages are still open, and letting go of everything Gradio holds for a closed one.

Gradio keeps a closed session's gr.State values for an hour, its copy of the page's config until 10,000
sessions have come and gone, the results of its last events (a tick, the page load: charts, runs table) that
the page left before reading until 2,000 sessions have, and a set of event ids per session for ever; here that
was the run state, the Watch with every followed run's series and the figures drawn from them: 2.1 MiB per
reload with a 2000-step run shown (bench/soak.py measures it).

A page is open while its heartbeat stream is (the Gradio client opens one per session and keeps it;
`HeartbeatCounter` counts them, an ASGI middleware `Workbench.launch` installs). When a heartbeat closes Gradio
fires the page's unload; `forget_later` then waits a few seconds and forgets the session unless the page shows
it is alive: its heartbeat is open again (a stream that dropped on a busy machine and came back), or it started
an event after its queued ones were dropped and those in flight had settled. "Used since unload" alone is not enough: events the
page sent just before it closed start and finish after the unload (seen: 0.001-0.65 s later, one session in
two on a busy machine), so a closed page looked alive and was kept for ever.
"""
from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import datetime
import gc
import re
import threading
from collections import Counter
from typing import Any, Optional

import gradio as gr

from webui.allocator import arrow_on_the_system_allocator

FORGET_AFTER_S = 10.0  # how long a page that fired unload has to show it is still alive
SETTLE_S = 2.0         # an event the queue handed out as the page closed has started by then
HEARTBEAT_PATH = re.compile(r"/heartbeat/([^/?]+)/?$")


class Heartbeats:
    """How many heartbeat streams each session has open now (a page has one; a reconnect briefly two)."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()
        self._lock = threading.Lock()

    def opened(self, session: str) -> None:
        with self._lock:
            self._open[session] += 1

    def closed(self, session: str) -> None:
        with self._lock:
            self._open[session] -= 1
            if self._open[session] <= 0:
                del self._open[session]

    def is_open(self, session: str) -> bool:
        with self._lock:
            return self._open.get(session, 0) > 0

    def __len__(self) -> int:
        with self._lock:
            return len(self._open)


class HeartbeatCounter:
    """ASGI middleware: counts a session's heartbeat stream open from its request until the client goes away
    (the disconnect, not the end of the request: Gradio runs the unload handlers inside the closing request)."""

    def __init__(self, app: Any, heartbeats: Heartbeats) -> None:
        self.app, self.heartbeats = app, heartbeats

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        match = HEARTBEAT_PATH.search(scope.get("path", "")) if scope.get("type") == "http" else None
        if match is None:
            await self.app(scope, receive, send)
            return
        session, done = match.group(1), []
        self.heartbeats.opened(session)

        def close() -> None:
            if not done:
                done.append(True)
                self.heartbeats.closed(session)

        async def watched_receive() -> dict:
            message = await receive()
            if message.get("type") == "http.disconnect":
                close()
            return message

        try:
            await self.app(scope, watched_receive, send)
        finally:
            close()


class Workbench(gr.Blocks):
    """gr.Blocks that knows which of its pages are open: `launch` (however it is called: the app, a test, a
    script) installs the heartbeat counter, and the unload handler forgets closed sessions."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        arrow_on_the_system_allocator()  # app.py did it before gradio loaded pyarrow (in-process: Python level)
        super().__init__(*args, **kwargs)
        self.heartbeats = Heartbeats()
        self._forgetting: set[asyncio.Task] = set()

    def launch(self, *args: Any, app_kwargs: Optional[dict] = None, **kwargs: Any) -> Any:
        from starlette.middleware import Middleware
        app_kwargs = dict(app_kwargs or {})
        app_kwargs["middleware"] = [*app_kwargs.get("middleware", []),
                                    Middleware(HeartbeatCounter, heartbeats=self.heartbeats)]
        return super().launch(*args, app_kwargs=app_kwargs, **kwargs)

    def forget_closed_pages(self) -> None:
        """Wire the unload handler (call inside the `with` block)."""
        self.unload(self._on_unload)

    async def _on_unload(self, request: gr.Request) -> None:
        session = getattr(request, "session_hash", None)
        if session:  # decided later, off the closing request (Gradio awaits unload handlers inside it)
            task = asyncio.get_running_loop().create_task(self.forget_later(session))
            self._forgetting.add(task)
            task.add_done_callback(self._forgetting.discard)

    def _last_used(self, session: str) -> Optional[datetime.datetime]:
        holder = getattr(self, "state_holder", None)
        return getattr(holder, "time_last_used", {}).get(session) if holder is not None else None

    async def forget_later(self, session: str, settle_s: float = SETTLE_S,
                           wait_s: float = FORGET_AFTER_S) -> bool:
        """Forget `session` unless its page shows it is alive within wait_s; True when it was forgotten."""
        queue = getattr(self, "_queue", None)
        if queue is not None:  # what it queued before it closed never starts (Gradio marked it closed already)
            await queue.clean_events(session_hash=session)
        await asyncio.sleep(settle_s)  # an event taken off the queue just before has started by then
        settled = self._last_used(session)
        await asyncio.sleep(max(0.0, wait_s - settle_s))
        used = self._last_used(session)
        if self.heartbeats.is_open(session) or (used is not None and (settled is None or used > settled)):
            return False
        await self.forget(session)
        return True

    async def forget(self, session: str) -> None:
        """Drop everything Gradio holds for one session: its events still queued, their unread results, its
        state and its copy of the page's config."""
        queue = getattr(self, "_queue", None)
        if queue is not None:
            await queue.clean_events(session_hash=session)  # its events still queued send nothing more
            unread = queue.pending_messages_per_session.get(session)  # (an open stream ends by itself)
            while unread is not None and not unread.empty():
                unread.get_nowait()
            queue.pending_messages_per_session.pop(session, None)
            queue.pending_event_ids_session.pop(session, None)
        holder = getattr(self, "state_holder", None)
        if holder is not None:
            with holder.lock:
                holder.session_data.pop(session, None)
                holder.time_last_used.pop(session, None)
        await asyncio.to_thread(give_back_free_memory)


def _malloc_trim():
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to do
        return None


_TRIM = _malloc_trim()


def give_back_free_memory() -> None:
    """Free a closed page's objects now and hand the heap's free pages back to the system. Drawing a page
    leaves thousands of objects in reference cycles (Gradio's and plotly's closures, encoders, classes): left to
    the collector's schedule they wait for a full collection, which comes rarer as the heap grows, and
    meanwhile new objects are placed between the dead ones. glibc keeps freed memory in per-thread arenas (Gradio answers events from a pool of
    threads, each building figures), so without the trim the app's resident size stays at the high-water mark
    of every thread that ever drew a page."""
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)
