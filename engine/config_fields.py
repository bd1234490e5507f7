"""The two helpers every config section is written with: F (a field with its help text and range)
and N (a nested section). Light module: stdlib only."""
from __future__ import annotations

from dataclasses import field
from typing import Any


def F(default: Any, help: str, **kw: Any) -> Any:
    """A config field: its default and its one help text (shown in the UI and in `--help`)."""
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


def N(cls: type, help: str) -> Any:
    """A nested section."""
    return field(default_factory=cls, metadata={"help": help})
