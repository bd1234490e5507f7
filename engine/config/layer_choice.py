"""Which decoder layers receive P-Tuning v2's deep prompts, as the user writes it in
`method.prompt.layers`: 'all', 'top N' (the N layers nearest the output), 'bottom N' (nearest the
input), or layer numbers counted from 0, with ranges: '0, 4, 8-11'. Parsed here once, so the config
check, the memory estimate (which knows the model's layer count from its files) and the module that
inserts the prompts agree. Light: stdlib only.
"""
from __future__ import annotations

import re

KEY = "method.prompt.layers"
HOW = "write 'all', 'top N', 'bottom N' or layer numbers from 0 such as '0, 4, 8-11'"
_TOP = re.compile(r"^(top|bottom)\s+(\d+)$")
_RANGE = re.compile(r"^(\d+)\s*-\s*(\d+)$")


def problem(spec: str) -> str | None:
    """Why the spec cannot be read (without knowing the model), or None."""
    try:
        _parse(spec)
    except ValueError as e:
        return f"{KEY}: {e}"
    return None


def _parse(spec: str):
    s = " ".join(str(spec).strip().lower().split())
    if s == "all":
        return "all", None
    m = _TOP.match(s)
    if m:
        n = int(m.group(2))
        if n < 1:
            raise ValueError(f"{spec!r} chooses no layer; {HOW}")
        return m.group(1), n
    if not s:
        raise ValueError(f"empty; {HOW}")
    chosen: set[int] = set()
    for part in s.split(","):
        part = part.strip()
        r = _RANGE.match(part)
        if r:
            a, b = int(r.group(1)), int(r.group(2))
            if a > b:
                raise ValueError(f"the range {part!r} runs backwards; write it low-high")
            chosen.update(range(a, b + 1))
        elif part.isdigit():
            chosen.add(int(part))
        else:
            raise ValueError(f"cannot read {part!r} in {spec!r}; {HOW}")
    return "list", sorted(chosen)


def resolve(spec: str, n_layers: int) -> list[int]:
    """The chosen layer indices (ascending) for a model with n_layers decoder layers. Raises ValueError
    naming the field when the spec is unreadable or asks for layers the model does not have."""
    try:
        kind, arg = _parse(spec)
    except ValueError as e:
        raise ValueError(f"{KEY}: {e}") from None
    if kind == "all":
        return list(range(n_layers))
    if kind in ("top", "bottom"):
        if arg > n_layers:
            raise ValueError(f"{KEY}: {spec!r} asks for {arg} layers but this model has {n_layers}; use "
                             f"'all' or at most '{kind} {n_layers}'")
        return list(range(n_layers - arg, n_layers)) if kind == "top" else list(range(arg))
    bad = [i for i in arg if i >= n_layers]
    if bad:
        raise ValueError(f"{KEY}: layers {bad} do not exist; this model's layers are 0-{n_layers - 1}")
    return arg
