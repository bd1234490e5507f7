"""What the Dataset tab shows, computed without torch or transformers (the UI process imports this).

- `inspect(name, cfg)`: detected format, row count, every row checked (empty / missing fields /
  malformed / over the cutoff, each named), token lengths under the run's template and cutoff.
- `page(...)`: one page of rows as a pandas DataFrame.
- `histogram(...)`: bin edges and counts of token lengths, with the cutoff and how many rows it cuts
  (the UI draws it with Plotly; the engine never imports Plotly).
- `example_html(...)`: one example rendered through the chat template, trained tokens highlighted,
  masked prompt tokens greyed, tokens past the cutoff struck out.

Tokens come from data.light_tokenizer (the `tokenizers` library and Jinja2) and go through the same
data.encode / data.checks code the training worker runs, so the preview is what training sees.
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.config import RunConfig
from engine.data import checks, encode, formats, light_tokenizer, sources, templates
from engine.data import names as dataset_names
from engine.data.files import DataError
from engine.preflight import model_list

PREVIEW_ROWS = 5000  # rows tokenised for the histogram (all rows are checked for problems)


@dataclass
class Inspection:
    name: str
    source: str = ""
    format: str = ""
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    counts: checks.Counts = field(default_factory=checks.Counts)
    lengths: list[int] = field(default_factory=list)
    tokenised_rows: int = 0
    cutoff_len: int = 1024
    template: str = ""
    notes: list[str] = field(default_factory=list)
    error: str = ""          # the dataset cannot be read at all: file, line and what to do
    items: list[checks.Item] = field(default_factory=list)

    @property
    def over_cutoff(self) -> int:
        return sum(1 for n in self.lengths if n > self.cutoff_len)

    def summary(self) -> str:
        if self.error:
            return self.error
        head = f"{self.source}: {self.format} format, " + self.counts.summary(self.cutoff_len)
        if self.tokenised_rows and self.tokenised_rows < self.rows:
            head += f" (token lengths from the first {self.tokenised_rows} rows)"
        return head


def tokenizer_dir(name_or_path: str) -> Path | None:
    """Where the model's tokenizer files are on this machine, without loading the model."""
    return model_list.local_dir(name_or_path, "tokenizer.json")


def tokenizer_for(cfg: RunConfig) -> tuple[light_tokenizer.LightTokenizer | None, str]:
    """(tokenizer with the run's template applied, note). The tokenizer is None when it cannot be had."""
    d = tokenizer_dir(cfg.model.name_or_path)
    if d is None:
        return None, (f"token counts need the tokenizer of {cfg.model.name_or_path}, which is not on this machine "
                      "yet (it downloads with the model on the first run)")
    try:
        tok = light_tokenizer.load(d)
        templates.apply(tok, cfg.data.template, cfg.data.system)
    except (templates.TemplateError, light_tokenizer.NoTokenizer, OSError, ValueError) as e:
        return None, str(e)
    return tok, templates.stop_problem(tok) or ""


@lru_cache(maxsize=8)
def _load(name: str, fmt: str, columns: tuple, stamp: float) -> sources.Loaded:
    return sources.load(name, fmt, dict(columns))


def _stamp(name: str) -> float:
    p = Path(name.rpartition(":")[0] if ":" in name and not Path(name).exists() else name).expanduser()
    try:
        return p.stat().st_mtime
    except OSError:
        b = dataset_names.bundled(include_eval=True).get(name)
        return b.stat().st_mtime if b else 0.0


def load(name: str, cfg: RunConfig) -> sources.Loaded:
    return _load(name, cfg.data.format, tuple(sorted(cfg.data.columns.items())), _stamp(name))


def inspect(name: str, cfg: RunConfig, tokenizer=None, limit: int = PREVIEW_ROWS) -> Inspection:
    """Read, check and measure one dataset as the run config would train on it. Never raises for a bad
    dataset: the problem is in `.error`."""
    out = Inspection(name=name, cutoff_len=cfg.data.cutoff_len, template=cfg.data.template)
    try:
        loaded = load(name, cfg)
    except DataError as e:
        out.error = str(e)
        return out
    out.source, out.format, out.rows = loaded.source, loaded.spec.format, len(loaded.rows)
    out.notes = list(loaded.notes)
    seen: dict[str, None] = {}
    for r in loaded.rows[:200]:
        seen.update(dict.fromkeys(r.data))
    out.columns = list(seen)
    if tokenizer is None:
        tokenizer, note = tokenizer_for(cfg)
        if note:
            out.notes.append(note)
    items = checks.examine(loaded, None)  # every row checked for problems
    if tokenizer is not None:
        tokenised = checks.examine(loaded, tokenizer, cfg.data.cutoff_len, limit)
        items[: len(tokenised)] = tokenised
        out.lengths = [it.encoded.length for it in tokenised if it.encoded is not None]
        out.tokenised_rows = len(tokenised)
    out.items = items
    out.counts = checks.Counts().add(items, cfg.data.cutoff_len)
    if out.format == "preference":
        out.notes.append("preference pairs train the preference stages; the example shows the prompt with the "
                         "chosen answer")
    return out


def page(loaded_or_insp, number: int = 0, size: int = 20):
    """Rows number*size .. +size as a DataFrame, with the row number and any problem beside each row."""
    import pandas as pd
    items = loaded_or_insp.items
    chunk = items[number * size:(number + 1) * size]
    recs = []
    for it in chunk:
        rec = {"row": it.row.row}
        for k, v in it.row.data.items():
            s = v if isinstance(v, str) else repr(v)
            rec[k] = s if len(s) <= 300 else s[:300] + "…"
        rec["problem"] = it.problem.message if it.problem else ""
        recs.append(rec)
    return pd.DataFrame(recs, columns=["row", *loaded_or_insp.columns, "problem"])


def pages(insp: Inspection, size: int = 20) -> int:
    return max(1, math.ceil(len(insp.items) / size))


def histogram(lengths: list[int], cutoff_len: int, bins: int = 30) -> dict:
    """Equal-width bins over the token lengths: {'edges', 'counts', 'cutoff', 'over', 'total'}."""
    if not lengths:
        return {"edges": [], "counts": [], "cutoff": cutoff_len, "over": 0, "total": 0}
    lo, hi = min(lengths), max(lengths)
    if cutoff_len <= 2 * hi:  # keep the cutoff on the chart unless it is far beyond every row
        hi = max(hi, cutoff_len)
    width = max(1, math.ceil((hi - lo + 1) / bins))
    edges = [lo + i * width for i in range(bins + 1)]
    counts = [0] * bins
    for n in lengths:
        counts[min((n - lo) // width, bins - 1)] += 1
    return {"edges": edges, "counts": counts, "cutoff": cutoff_len, "over": sum(n > cutoff_len for n in lengths),
            "total": len(lengths)}


STYLE = """<style>
.ws-tokens{font-family:ui-monospace,monospace;font-size:13px;line-height:1.9;white-space:pre-wrap;word-break:break-word}
.ws-tokens span.t{border-radius:3px;padding:1px 0;margin:0 1px 0 0}
.ws-tokens .trained{background:#c8f2cf;color:#0b3d16;box-shadow:inset 0 -2px 0 #2f9e44}
.ws-tokens .masked{color:#9aa0a6;background:#f1f3f4}
.ws-tokens .cut{color:#c92a2a;text-decoration:line-through;background:#fff0f0}
.ws-legend{font-size:13px;margin-bottom:6px}
.ws-legend span{padding:1px 6px;border-radius:3px;margin-right:8px}
</style>"""


def _show(piece: str) -> str:
    return html.escape(piece).replace("\n", "↵\n").replace("\t", "→\t")


def example_html(tokenizer, example: formats.Example, cutoff_len: int) -> str:
    """The example as the model sees it, one <span> per token: class trained / masked / cut."""
    if isinstance(example, formats.Text):
        parts = [(example.text, True, True)]
    else:
        messages, tools = checks.conversation_of(example)
        parts = [(t, trained, False) for t, trained in encode.segments(tokenizer, messages, tools)]
    spans, n, counts = [], 0, {"trained": 0, "masked": 0, "cut": 0}
    for text, trained, special in parts:
        enc = tokenizer._tok.encode(text, add_special_tokens=special)
        ids, offsets = list(enc.ids), list(enc.offsets)
        if special and tokenizer.eos_token_id is not None:
            ids.append(tokenizer.eos_token_id)
            offsets.append((0, 0))
        last_end = 0
        for tid, (s, e) in zip(ids, offsets):
            if e > s and s >= last_end:
                piece, last_end = text[last_end:e], e  # with any space the offsets leave out
            elif e > s:
                piece = ""  # a character split over several byte tokens: shown once
            else:
                piece = tokenizer._tok.id_to_token(tid) or ""
            cls = "cut" if n >= cutoff_len else ("trained" if trained else "masked")
            counts[cls] += 1
            n += 1
            spans.append(f'<span class="t {cls}" title="token {n}: id {tid}">{_show(piece)}</span>')
    legend = (f'<div class="ws-legend">{n} tokens: <span class="trained">{counts["trained"]} trained (loss)</span>'
              f'<span class="masked">{counts["masked"]} masked prompt</span>'
              + (f'<span class="cut">{counts["cut"]} cut by cutoff_len={cutoff_len}</span>' if counts["cut"] else "")
              + "</div>")
    return STYLE + legend + '<div class="ws-tokens">' + "".join(spans) + "</div>"


def first_example(insp: Inspection, start: int = 0) -> checks.Item | None:
    """The first usable row at or after `start` (for the highlighted example)."""
    for it in insp.items[start:] + insp.items[:start]:
        if it.example is not None and it.problem is None:
            return it
    return None
