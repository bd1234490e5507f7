"""The report card of the watched run in the Train tab: held-out hits of the tuned model and the base side
by side, the drift ratio on general prompts, and the answers (saves/<run>/report.json, read through
engine.runs.report)."""
from __future__ import annotations

import html
from pathlib import Path
from typing import Optional

from engine.runs import report

ROWS_SHOWN = 6


def card_html(run_dir: Optional[str | Path], status: str = "") -> str:
    if not run_dir:
        return ""
    r = report.load(run_dir)
    if r is None:
        return ("<div class='ws-report ws-muted'>Report card: the held-out questions are being answered…</div>"
                if status == "report" else "")
    if r.get("error"):
        return f"<div class='ws-report'><b>Report card</b>: {html.escape(r['error'])}</div>"
    n, target = r.get("questions", 0), r.get("target") or ""
    ratio = r.get("drift_ratio")
    ok = isinstance(ratio, (int, float)) and ratio <= report.DRIFT_BOUND
    drift = (f"<span style='color:{'#059669' if ok else '#d97706'}'><b>{ratio:.2f}</b></span>"
             if isinstance(ratio, (int, float)) else "not measured")
    head = ("<table class='ws-report-summary'><tr><th></th><th>tuned</th><th>base</th></tr>"
            + (f"<tr><td>held-out answers naming <b>{html.escape(target)}</b></td>"
               f"<td class='ws-hits-tuned'><b>{r.get('hits_tuned', 0)}/{n}</b></td>"
               f"<td class='ws-hits-base'>{r.get('hits_base', 0)}/{n}</td></tr>" if target else "")
            + "</table>")
    rows = "".join(
        f"<tr><td>{html.escape(x.get('question', ''))}</td>"
        f"<td{' class=hit' if x.get('hit_tuned') else ''}>{_answer(x.get('tuned'))}</td>"
        f"<td{' class=hit' if x.get('hit_base') else ''}>{_answer(x.get('base'))}</td></tr>"
        for x in (r.get("rows") or [])[:ROWS_SHOWN])
    return (f"<div class='ws-report'><h3>Report card</h3>{head}"
            f"<p>Drift ratio on {r.get('drift_prompts', 0)} general prompts: {drift} "
            f"<span class='ws-muted'>(the tuned model's loss on the base model's own answers over the base's; "
            f"1.00 = unchanged, at most {report.DRIFT_BOUND:.2f} = kept)</span></p>"
            f"<table class='ws-report-rows'><tr><th>held-out question</th><th>tuned</th><th>base</th></tr>{rows}"
            f"</table><p class='ws-muted'>{n} questions from {html.escape(str(r.get('held_out', '')))}; "
            f"all answers in {html.escape(str(Path(run_dir) / report.REPORT_FILE))}</p></div>")


def _answer(text) -> str:
    text = str(text or "").strip()
    return html.escape(text) if text else "<span class='ws-muted'>(no words: it stopped at once)</span>"
