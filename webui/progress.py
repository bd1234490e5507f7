"""The progress line of the watched run: status, step / total, elapsed and ETA, and a failure's
reason in plain words (HTML for gr.HTML)."""
from __future__ import annotations

import bisect
import html
import time
from typing import Optional

from webui.live import RunSeries

STATUS_COLORS = {
    "starting": "#6b7280", "loading": "#6b7280", "running": "#2563eb", "checkpoint": "#2563eb",
    "finished": "#059669", "stopped": "#d97706", "failed": "#dc2626", "stalled": "#dc2626",
}


def duration(seconds: Optional[float]) -> str:
    if seconds is None or seconds < 0:
        return "–"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def eta_seconds(series: RunSeries) -> Optional[float]:
    """Time left at the pace of this attempt's logged steps; None until that pace is known."""
    if not series.total_steps or len(series.train_steps) < 2 or series.ended:
        return None
    n = len(series.train_steps)
    first = 0 if series.attempt_t is None else bisect.bisect_left(series.train_t, series.attempt_t, 0, n)
    if n - first < 2 or series.train_steps[n - 1] <= series.train_steps[first]:
        return None
    rate = (series.train_t[n - 1] - series.train_t[first]) / (series.train_steps[n - 1] - series.train_steps[first])
    return max(0.0, (series.total_steps - series.step) * rate)


def progress_html(name: Optional[str], series: Optional[RunSeries], now: Optional[float] = None,
                  alive: bool = False) -> str:
    if not name or series is None:
        return ("<div class='ws-progress'><span class='ws-muted'>No run selected. Set things up in the tabs, "
                "then press <b>Start</b>; or pick a past run below.</span></div>")
    now = time.time() if now is None else now
    # A worker gone without an end event is failed; one silent for too long, stalled (5 s of grace: a
    # just-started worker may not have written its worker file yet).
    status, why = series.verdict(alive, now, grace_s=5.0)
    stalled = status == "stalled"
    color = STATUS_COLORS.get(status, "#6b7280")
    total = series.total_steps
    pct = min(100.0, 100.0 * series.step / total) if total else 0.0
    if status == "finished":
        pct = 100.0
    start = series.attempt_t if series.attempt_t is not None else series.first_t
    end = now if status in ("starting", "loading", "running", "checkpoint") else series.last_t
    elapsed = (end - start) if (start is not None and end is not None) else None
    eta = eta_seconds(series)
    steps = f"step {series.step} / {total}" if total else f"step {series.step}"
    loss = series.latest("loss")
    parts = [
        f"<span class='ws-badge' style='background:{color}'>{html.escape(status)}</span>",
        f"<b>{html.escape(name)}</b>",
        f"<span>{steps}</span>",
        f"<span>elapsed {duration(elapsed)}</span>",
        f"<span>ETA {duration(eta)}</span>",
    ]
    if loss is not None:
        parts.append(f"<span>loss {loss:.4f}</span>")
    if stalled:
        parts.append(f"<span class='ws-stalled'>{html.escape(why)}</span>")
    elif series.detail and not series.error:
        parts.append(f"<span class='ws-muted'>{html.escape(series.detail)}</span>")
    notes = "".join(f"<div class='ws-note'>⚠️ {html.escape(n)}</div>" for n in series.notes)
    return (f"<div class='ws-progress' data-status='{html.escape(status)}' data-step='{series.step}'>"
            f"<div class='ws-progress-line'>{' '.join(parts)}</div>{notes}"
            f"<div class='ws-bar'><div class='ws-bar-fill' style='width:{pct:.1f}%;background:{color}'></div></div>"
            f"</div>")


def failure_markdown(series: Optional[RunSeries], alive: Optional[bool] = None, now: Optional[float] = None) -> str:
    """A failed run's reason in plain words, with the traceback folded away underneath. alive: whether its
    worker still lives, when known (a worker gone without an end event failed too, and says why)."""
    if series is None:
        return ""
    error = series.error
    if alive is not None:
        status, why = series.verdict(alive, now, grace_s=5.0)
        error = why if status == "failed" else error
    if not error:
        return ""
    text = f"**The run failed.** {error}"
    if series.traceback:
        tb = series.traceback.strip().splitlines()[-25:]
        text += "\n\n<details><summary>Technical details</summary>\n\n```\n" + "\n".join(tb) + "\n```\n</details>"
    return text
