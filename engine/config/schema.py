"""The machinery under every typed config: F and N (a field with its help text and range, a nested
section), walking the fields, and checking values against their types and ranges, collecting every
problem with the field's dotted name. Light: stdlib only. The sections themselves live beside it
(run.py, method.py, export.py, chat.py, evaluate.py)."""
from __future__ import annotations

import dataclasses
import reprlib
import typing
from dataclasses import field
from typing import Any, Literal, Optional, Union


def F(default: Any, help: str, **kw: Any) -> Any:
    """A config field: its default and its one help text (shown in the UI and in `--help`). Keywords: min,
    max, min_exclusive (checked), and how the UI shows it: label, widget ('slider' | 'radio' | 'names' |
    'checkboxes'),
    step."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def N(cls: type, help: str) -> Any:
    """A nested section."""
    return field(default_factory=cls, metadata={"help": help})


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def is_section(tp: Any) -> bool:
    return dataclasses.is_dataclass(tp) and isinstance(tp, type)


def iter_fields(cls: type, prefix: str = ""):
    """Yield (dotted_key, type, default, metadata) for every leaf field, in declaration order."""
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        key = f"{prefix}{f.name}"
        if is_section(tp):
            yield from iter_fields(tp, key + ".")
        else:
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            yield key, tp, default, dict(f.metadata)


def type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin is Union:
        args = typing.get_args(tp)
        return " | ".join("None" if a is type(None) else type_name(a) for a in args)
    if origin is list:
        return f"list[{type_name(typing.get_args(tp)[0])}]"
    if origin is dict:
        k, v = typing.get_args(tp)
        return f"dict[{type_name(k)}, {type_name(v)}]"
    return getattr(tp, "__name__", str(tp))


def choices(tp: Any) -> Optional[tuple]:
    """The allowed values of a Literal field, else None."""
    return typing.get_args(tp) if typing.get_origin(tp) is Literal else None


# ---------------------------------------------------------------------------------------------
# Type checking and conversion
# ---------------------------------------------------------------------------------------------

_MISSING = object()

_REPR = reprlib.Repr()
_REPR.maxstring, _REPR.maxother, _REPR.maxlevel, _REPR.maxlist, _REPR.maxdict = 120, 120, 3, 6, 6


def show(value: Any) -> str:
    """A value as an error message quotes it: shortened, and safe for deeply nested or enormous input."""
    return _REPR.repr(value)


def _coerce(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check ``value`` against ``tp``; return it (ints widen to floats). Appends to problems on error."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            problems.append(f"{key}: {show(value)} is not one of {', '.join(map(repr, allowed))}")
            return _MISSING
        return value
    if origin is Union:
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:  # Optional[X]: X's own words (e.g. "must be a finite number")
            return _coerce(value, members[0], key, problems)
        # Try each non-None member; keep the first that fits.
        for a in args:
            if a is type(None):
                continue
            trial: list[str] = []
            out = _coerce(value, a, key, trial)
            if not trial:
                return out
        problems.append(f"{key}: expected {type_name(tp)}, got {type(value).__name__} {show(value)}")
        return _MISSING
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            problems.append(f"{key}: expected a list of {type_name(inner)}, got {type(value).__name__} {show(value)}")
            return _MISSING
        out = []
        for i, item in enumerate(value):
            v = _coerce(item, inner, f"{key}[{i}]", problems)
            out.append(v)
        return out
    if origin is dict:
        ktp, vtp = typing.get_args(tp)
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping, got {type(value).__name__} {value!r}")
            return _MISSING
        return {_coerce(k, ktp, f"{key} key {k!r}", problems): _coerce(v, vtp, f"{key}.{k}", problems)
                for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: expected true or false, got {type(value).__name__} {show(value)}")
            return _MISSING
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            problems.append(f"{key}: expected a whole number, got {type(value).__name__} {show(value)}")
            return _MISSING
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: expected a number, got {type(value).__name__} {show(value)}")
            return _MISSING
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            problems.append(f"{key}: must be a finite number, got {show(value)}")
            return _MISSING
        return value
    if tp is str:
        if not isinstance(value, str):
            problems.append(f"{key}: expected text, got {type(value).__name__} {show(value)}")
            return _MISSING
        return value
    raise TypeError(f"unsupported config type {tp!r} at {key}")


def _check_range(key: str, value: Any, meta: dict, problems: list[str]) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return
    if "min" in meta and value < meta["min"]:
        problems.append(f"{key}: must be at least {meta['min']}, got {show(value)}")
    if "min_exclusive" in meta and value <= meta["min_exclusive"]:
        problems.append(f"{key}: must be greater than {meta['min_exclusive']}, got {show(value)}")
    if "max" in meta and value > meta["max"]:
        problems.append(f"{key}: must be at most {meta['max']}, got {show(value)}")


def build_section(cls: type, data: Any, prefix: str, problems: list[str]) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        problems.append(f"{prefix.rstrip('.') or 'config'}: expected a mapping of fields, got "
                        f"{type(data).__name__} {show(data)}")
        return cls()
    hints = _hints(cls)
    names = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for k in data:
        if k not in names:
            near = [n for n in names if n.lower() == str(k).lower() or n.startswith(str(k)[:4])]
            hint = f" (did you mean {prefix}{near[0]}?)" if near else f" (known: {', '.join(names)})"
            problems.append(f"{prefix}{k}: unknown key{hint}")
    for name, f in names.items():
        tp = hints[name]
        key = prefix + name
        if name not in data:
            continue
        if is_section(tp):
            kwargs[name] = build_section(tp, data[name], key + ".", problems)
            continue
        before = len(problems)
        v = _coerce(data[name], tp, key, problems)
        if v is _MISSING or len(problems) > before:
            continue
        _check_range(key, v, dict(f.metadata), problems)
        kwargs[name] = v
    return cls(**kwargs)


def build_typed(cls: type, data: Any) -> tuple[Any, list[str]]:
    """An instance of any typed dataclass (the export and chat settings too) from a plain mapping, every
    field checked against its type and range: (instance, problems). Fields with problems keep defaults."""
    problems: list[str] = []
    return build_section(cls, data, "", problems), problems
