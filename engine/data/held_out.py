"""Held-out questions for a run's report card: which file holds them, its questions with their reference
answers, and the target a good answer contains (the new name, for an identity set). Light.

report.held_out 'auto' takes data.eval_datasets, else the '<name>_eval' file beside the first training
dataset: the bundled identity -> identity_eval, data/uploads/aria.json -> data/uploads/aria_eval.json (the
identity helper writes both). So a user who swaps in their own set with its _eval file gets its card.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Optional

from engine.config import RunConfig
from engine.data import checks, formats, sources
from engine.data import names as dataset_names
from engine.data.files import SUFFIXES

EVAL_SUFFIX = "_eval"


def sibling(name: str) -> Optional[str]:
    """The '<name>_eval' dataset beside a training dataset, if there is one."""
    bundled = dataset_names.bundled(include_eval=True)
    if name in bundled:
        return name + EVAL_SUFFIX if name + EVAL_SUFFIX in bundled else None
    p = Path(name).expanduser()
    if not p.is_file():
        return None
    for suffix in (p.suffix, *SUFFIXES):
        q = p.with_name(p.stem + EVAL_SUFFIX + suffix)
        if q.is_file():
            return str(q)
    return None


def source(cfg: RunConfig) -> Optional[str]:
    """The dataset whose questions the report card answers, or None (no card)."""
    h = cfg.report.held_out
    if h == "none" or cfg.method.stage != "sft":
        return None
    if h != "auto":
        return h
    if cfg.data.eval_datasets:
        return cfg.data.eval_datasets[0]
    return sibling(cfg.data.datasets[0]) if cfg.data.datasets else None


def questions(name: str, limit: Optional[int] = None) -> list[tuple[list[dict], str]]:
    """(prompt messages, reference answer) for each usable row with an assistant answer, in file order."""
    loaded = sources.load(name)
    out = []
    for it in checks.examine(loaded, None, limit=None):
        if it.example is None or isinstance(it.example, (formats.Text, formats.Preference)):
            continue
        msgs = checks.conversation_of(it.example)[0]
        last = max((i for i, m in enumerate(msgs) if m["role"] == "assistant"), default=None)
        if last is None:
            continue
        out.append((msgs[:last], msgs[last]["content"]))
        if limit and len(out) >= limit:
            break
    return out


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'-]+")
_NOT_NAMES = {"I", "I'm", "I've", "I'd", "I'll", "AI", "OK", "Yes", "No", "Sure", "Hi", "Hello"}


def infer_target(references: list[str]) -> str:
    """The name every reference answer shares: a capitalised word (not starting a sentence) present in all of
    them; of several, the one that comes first on average. '' when there is none."""
    if not references:
        return ""
    sets, first_at = [], Counter()
    for ref in references:
        found = {}
        for m in _WORD.finditer(ref):
            w = m.group(0)
            if w[0].isupper() and w not in _NOT_NAMES:
                found.setdefault(w.lower(), (w, m.start() / max(len(ref), 1)))
        sets.append(found)
    common = set(sets[0]).intersection(*sets[1:])
    if not common:
        return ""
    for key in common:
        first_at[key] = sum(s[key][1] for s in sets)
    best = min(common, key=lambda k: (first_at[k], k))
    return sets[0][best][0]


def hit(answer: str, target: str) -> bool:
    """The answer names the target (case-insensitive, as a whole word)."""
    return bool(target) and re.search(rf"(?<![A-Za-z0-9]){re.escape(target)}(?![A-Za-z0-9])", answer, re.I) is not None
