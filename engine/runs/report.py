"""A run's report card (saves/<run>/report.json, written by the training worker at the end of an SFT run
with held-out questions): reading it, and its summary in words for the CLI and the Train tab. Light."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

REPORT_FILE = "report.json"
DRIFT_BOUND = 1.10  # at most this drift ratio counts as "kept what it knew"


def load(run_dir: str | Path) -> Optional[dict]:
    try:
        data = json.loads((Path(run_dir) / REPORT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def drift_words(ratio) -> str:
    if not isinstance(ratio, (int, float)):
        return "not measured"
    verdict = "general answers kept" if ratio <= DRIFT_BOUND else "general answers changed"
    return f"{ratio:.2f} ({verdict}; 1.00 = unchanged)"


def headline(r: dict) -> str:
    """Hits and drift in one line."""
    if r.get("error"):
        return f"report card: {r['error']}"
    n = r.get("questions", 0)
    target = r.get("target") or ""
    hits = (f"{r.get('hits_tuned', 0)}/{n} held-out answers name {target!r} (base: {r.get('hits_base', 0)}/{n})"
            if target else f"{n} held-out questions answered (no target text to count)")
    return f"report card: {hits}; drift ratio {drift_words(r.get('drift_ratio'))}"


def text(r: dict, answers: int = 3) -> str:
    """The card as the CLI prints it at the end of a run: the headline and a few answers side by side."""
    out = [headline(r)]
    if r.get("held_out"):
        out.append(f"  held-out questions: {r['held_out']}; target from {r.get('target_from', '?')}")
    for row in (r.get("rows") or [])[:answers]:
        out.append(f"  Q: {row.get('question', '')}")
        out.append(f"    tuned: {_short(row.get('tuned', ''))}")
        out.append(f"    base:  {_short(row.get('base', ''))}")
    return "\n".join(out)


def _short(s: str, n: int = 160) -> str:
    s = " ".join(str(s).split())
    return s if len(s) <= n else s[: n - 1] + "…"
