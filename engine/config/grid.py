"""A sweep's grid: `key=v1,v2,...` specs (values read as YAML, like --set), every combination of them, and
the check of all combinations at once. Light (stdlib + yaml).

    train.learning_rate=1e-4,3e-4,1e-3     three values
    method.lora.targets=[q_proj,v_proj],all  commas inside brackets belong to the value

A bad grid is refused before anything is queued, with one error listing every problem: unknown fields,
specs without values, values of the wrong type or out of range (naming the runs they would spoil), and
more runs than MAX_RUNS without confirmation.
"""
from __future__ import annotations

import difflib
import itertools
from dataclasses import dataclass
from typing import Any

from engine import config as C
from engine.config.run import parse_yaml

MAX_RUNS = 64           # a bigger grid needs confirming (--yes)
HARD_LIMIT = 4096       # never queued, even confirmed


@dataclass(frozen=True)
class Axis:
    key: str                 # a dotted config field
    values: tuple            # parsed values, in the order given
    texts: tuple[str, ...]   # each value as written (run names are made from these)


def split_values(raw: str) -> list[str]:
    """Comma-separated values; commas inside [...] or {...} belong to their value."""
    out, depth, cur = [], 0, ""
    for ch in raw:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth = max(0, depth - 1)
        if ch == "," and depth == 0:
            out.append(cur.strip())
            cur = ""
        else:
            cur += ch
    out.append(cur.strip())
    return [v for v in out if v]


def _value(text: str) -> Any:
    try:
        return parse_yaml(text)
    except Exception:  # noqa: BLE001 - not YAML: the text itself, which the typed check then judges
        return text


def parse(specs: list[str]) -> tuple[list[Axis], list[str]]:
    """The axes of a grid, and every problem with the specs themselves (unknown field, no values, ...)."""
    known = [k for k, *_ in C.iter_fields()]
    axes, problems, seen = [], [], set()
    if not specs:
        return [], ["--grid: give at least one, e.g. --grid train.learning_rate=1e-4,3e-4,1e-3"]
    for spec in specs:
        key, eq, raw = str(spec).partition("=")
        key = key.strip()
        if not eq or not key:
            problems.append(f"--grid {spec!r}: expected dotted.key=value1,value2,...")
            continue
        if key not in known:
            near = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
            hint = f"did you mean {near[0]}?" if near else "`python app.py train --help` lists every field"
            problems.append(f"--grid {key}: unknown field; {hint}")
            continue
        if key.startswith("output."):
            problems.append(f"--grid {key}: a sweep names its runs and keeps them in one saves folder itself; "
                            "use --name for the sweep's name")
            continue
        if key in seen:
            problems.append(f"--grid {key}: given twice; put all its values in one --grid")
            continue
        seen.add(key)
        texts = split_values(raw)
        if not texts:
            problems.append(f"--grid {key}: no values; give them after '=', e.g. {key}=A,B")
            continue
        axes.append(Axis(key, tuple(_value(t) for t in texts), tuple(texts)))
    return axes, problems


def size(axes: list[Axis]) -> int:
    n = 1
    for a in axes:
        n *= len(a.values)
    return n


def combinations(axes: list[Axis]) -> list[tuple[tuple[str, Any, str], ...]]:
    """Every combination, the last axis changing fastest: ((key, value, text), ...) per run."""
    return [tuple(zip([a.key for a in axes], vals, texts))
            for vals, texts in zip(itertools.product(*[a.values for a in axes]),
                                   itertools.product(*[a.texts for a in axes]))]


def _with(base: dict, combo) -> dict:
    data = C.apply_overrides(base, [])  # a deep copy
    for key, value, _ in combo:
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return data


def expand(base: dict, specs: list[str], confirmed: bool = False) -> tuple[list[C.RunConfig], list, list[Axis]]:
    """The run config of every combination, each checked like a single run's; raises one ConfigError listing
    every problem found in any of them (a problem shared by several names their run numbers)."""
    axes, problems = parse(specs)  # the axes that parsed are checked too: every problem is said at once
    combos = combinations(axes) if axes else []
    n = len(combos)
    if n > HARD_LIMIT:
        raise C.ConfigError(problems + [f"--grid: {n} runs is more than the {HARD_LIMIT} a sweep may queue; "
                                        "narrow the grid"])
    if n > MAX_RUNS and not confirmed:
        problems.append(f"--grid: this grid makes {n} runs (more than {MAX_RUNS}); confirm to queue them all (--yes "
                        "on the command line, or tick the box beside Queue sweep), or narrow the grid")
    found: dict[str, list[int]] = {}
    configs = []
    for i, combo in enumerate(combos, 1):
        try:
            configs.append(C.from_dict(_with(base, combo)))
        except C.ConfigError as e:
            for p in e.problems:
                found.setdefault(p, []).append(i)
    for p, runs in found.items():
        which = ", ".join(map(str, runs)) if len(runs) <= 6 else f"{len(runs)}"
        problems.append(p if len(runs) == n else f"{p} (in {'run' if len(runs) == 1 else 'runs'} {which} of {n})")
    if problems:
        raise C.ConfigError(problems)
    return configs, combos, axes
