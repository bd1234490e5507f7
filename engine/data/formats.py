"""Reading dataset rows and turning each into a conversation (a list of role/content messages).

Formats (detected from the columns): alpaca (instruction / input / output, optional system and
history), sharegpt (conversations of from/value), messages (OpenAI role/content), text (plain text
for continued pre-training). Every problem names the file, the row and what to do.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from engine import dataset_names
from engine.data import guards

FORMATS = ("alpaca", "sharegpt", "messages", "text")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "system": "system", "function_call": "assistant", "observation": "user", "tool": "user"}


class DataError(ValueError):
    """A dataset problem, naming the file and row."""


def read_rows(name: str) -> tuple[str, list[dict]]:
    """(source label, rows) for a dataset name: bundled, local file or folder, or hub id."""
    kind, loc = dataset_names.resolve(name)
    import datasets
    datasets.disable_progress_bars()
    if kind == "file":
        ext = Path(loc).suffix.lower().lstrip(".")
        builder = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet"}[ext]
        if builder == "json" and (deep := guards.nesting_problem(loc)):
            raise DataError(deep)
        try:
            ds = datasets.load_dataset(builder, data_files=loc, split="train")
        except Exception as e:  # datasets wraps parser errors in several types
            raise DataError(f"{loc}: could not be read as {ext}: {(str(e).splitlines() or [type(e).__name__])[0][:300]}") from None
        return loc, [dict(r) for r in ds]
    if kind == "folder":
        files = sorted(p for p in Path(loc).iterdir() if p.suffix.lower() in dataset_names.FILE_SUFFIXES)
        if not files:
            raise DataError(f"{loc}: folder holds no .json/.jsonl/.csv/.parquet file")
        rows: list[dict] = []
        for f in files:
            rows += read_rows(str(f))[1]
        return loc, rows
    try:
        ds = datasets.load_dataset(loc, split="train")
    except Exception as e:
        raise DataError(f"{loc}: could not load from the hub: {(str(e).splitlines() or [type(e).__name__])[0][:300]}") from None
    return loc, [dict(r) for r in ds]


def detect(rows: list[dict], source: str = "dataset") -> str:
    if not rows:
        raise DataError(f"{source}: has no rows")
    keys = set().union(*(r.keys() for r in rows[:50]))
    if "conversations" in keys:
        return "sharegpt"
    if "messages" in keys:
        return "messages"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "text" in keys:
        return "text"
    raise DataError(f"{source}: cannot tell the format from its columns {sorted(keys)}; expected alpaca "
                    "(instruction/input/output), sharegpt (conversations), messages (role/content) or text")


def _s(v: Any) -> str:
    return "" if v is None else str(v)


def to_messages(row: dict, fmt: str, where: str) -> list[dict]:
    """One row -> messages; raises DataError naming `where` (file and row)."""
    if fmt == "alpaca":
        instr, inp, out = _s(row.get("instruction")), _s(row.get("input")), row.get("output")
        if out is None or _s(out).strip() == "":
            raise DataError(f"{where}: has no `output`; every alpaca row needs a non-empty output")
        if not (instr.strip() or inp.strip()):
            raise DataError(f"{where}: `instruction` and `input` are both empty")
        msgs = []
        if _s(row.get("system")).strip():
            msgs.append({"role": "system", "content": _s(row["system"])})
        for pair in row.get("history") or []:
            if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                raise DataError(f"{where}: `history` must be a list of [question, answer] pairs")
            msgs += [{"role": "user", "content": _s(pair[0])}, {"role": "assistant", "content": _s(pair[1])}]
        prompt = instr if not inp.strip() else (f"{instr}\n\n{inp}" if instr.strip() else inp)
        msgs += [{"role": "user", "content": prompt}, {"role": "assistant", "content": _s(out)}]
        return msgs
    if fmt in ("sharegpt", "messages"):
        turns = row.get("conversations" if fmt == "sharegpt" else "messages")
        if not isinstance(turns, list) or not turns:
            raise DataError(f"{where}: `{'conversations' if fmt == 'sharegpt' else 'messages'}` is empty or not a list")
        msgs = []
        for j, t in enumerate(turns):
            if not isinstance(t, dict):
                raise DataError(f"{where}, turn {j}: expected an object, got {type(t).__name__}")
            role = t.get("from", t.get("role"))
            content = t.get("value", t.get("content"))
            mapped = SHAREGPT_ROLES.get(role) if fmt == "sharegpt" else (
                role if role in ("system", "user", "assistant", "tool") else None)
            if mapped is None:
                allowed = "human, gpt, system, function_call, observation" if fmt == "sharegpt" else \
                    "system, user, assistant, tool"
                raise DataError(f"{where}, turn {j}: role {role!r} is not one of {allowed}")
            msgs.append({"role": mapped, "content": _s(content)})
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(f"{where}: has no assistant turn to learn from")
        return msgs
    raise DataError(f"{where}: format {fmt!r} has no conversation")


def iter_messages(rows: Iterable[dict], fmt: str, source: str):
    for i, row in enumerate(rows):
        yield i, to_messages(row, fmt, f"{source}, row {i}")
