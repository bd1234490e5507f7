"""A dataset name -> its rows and how to read them (format, column mapping, role tags).

Light module. Names are what data.datasets holds: a bundled name, a local file or folder, a hub id,
or a LLaMA-Factory data folder (one holding dataset_info.json), read as it is: `folder` when it
defines one dataset, `folder:name` to pick one of several.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from engine.data import files, formats
from engine.data import names as dataset_names
from engine.data.files import DataError, SourceRow

INFO_FILE = dataset_names.INFO_FILE

# LLaMA-Factory column names -> Whetstone's canonical ones.
_LF_ALPACA = {"prompt": "instruction", "query": "input", "response": "output", "history": "history",
              "system": "system", "chosen": "chosen", "rejected": "rejected"}
_LF_SHAREGPT = {"messages": "conversations", "system": "system", "tools": "tools", "chosen": "chosen",
                "rejected": "rejected"}


@dataclass
class Loaded:
    name: str                      # as written in data.datasets
    source: str                    # the file, folder or hub id every message names
    spec: formats.FormatSpec
    rows: list[SourceRow]
    notes: list[str] = field(default_factory=list)


def _rows(kind: str, loc: str) -> list[SourceRow]:
    if kind == "file":
        return files.read_file(loc)
    if kind == "folder":
        return files.read_folder(loc)
    return files.read_hub(loc)


def _spec(name: str, source: str, rows: list[SourceRow], fmt: str, columns: dict[str, str]) -> formats.FormatSpec:
    if fmt == "auto":
        found = formats.detect([r.data for r in rows], columns)
        if found is None:
            keys = sorted(set().union(*(r.data.keys() for r in rows[:100])))
            raise DataError(f"{source}: {formats.cannot_detect(keys)}")
        fmt = found
    return formats.FormatSpec(fmt, dict(columns))


def load(name: str, fmt: str = "auto", columns: dict[str, str] | None = None, root: Path | None = None) -> Loaded:
    """Read one dataset. `fmt` and `columns` (data.format / data.columns) override detection."""
    entry = dataset_names.info_entry(name, root)
    if entry is not None:
        return _load_info(name, *entry)
    try:
        kind, loc = dataset_names.resolve(name, root)
    except ValueError as e:
        raise DataError(str(e)) from None
    if kind == "folder" and (Path(loc) / INFO_FILE).is_file():
        return _load_info(name, Path(loc), None)
    rows = _rows(kind, loc)
    if not rows:
        raise DataError(f"{loc}: has no rows; add some or pick another file")
    return Loaded(name, loc, _spec(name, loc, rows, fmt, columns or {}), rows)


def read_info(folder: Path) -> dict:
    path = folder / INFO_FILE
    try:
        info = json.loads(files.read_text(path))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: line {e.lineno} is not valid JSON ({e.msg})") from None
    if not isinstance(info, dict) or not info:
        raise DataError(f"{path}: expected an object of dataset entries ({{\"name\": {{\"file_name\": ...}}}})")
    return info


def _load_info(name: str, folder: Path, entry: str | None) -> Loaded:
    info = read_info(folder)
    if entry is None:
        if len(info) != 1:
            raise DataError(f"{folder / INFO_FILE}: defines {len(info)} datasets; name one as "
                            f"'{folder}:NAME' (one of: {', '.join(list(info)[:20])})")
        entry = next(iter(info))
    if entry not in info:
        raise DataError(f"{folder / INFO_FILE}: has no dataset {entry!r} (it has: {', '.join(list(info)[:20])})")
    e = info[entry]
    where = f"{folder / INFO_FILE} [{entry}]"
    if not isinstance(e, dict):
        raise DataError(f"{where}: expected an object with file_name or hf_hub_url")
    notes: list[str] = []
    if "file_name" in e:
        path = folder / e["file_name"]
        if path.is_dir():
            source, rows = str(path), files.read_folder(path)
        elif path.is_file():
            source, rows = str(path), files.read_file(path)
        else:
            raise DataError(f"{where}: file_name {e['file_name']!r} does not exist in {folder}")
    elif "hf_hub_url" in e:
        source, rows = e["hf_hub_url"], files.read_hub(e["hf_hub_url"], e.get("split", "train"))
    else:
        raise DataError(f"{where}: needs file_name (a file beside dataset_info.json) or hf_hub_url; "
                        f"{', '.join(k for k in e if k.endswith('url')) or 'neither'} given")
    formatting = e.get("formatting", "alpaca")
    if formatting not in ("alpaca", "sharegpt"):
        raise DataError(f"{where}: formatting {formatting!r} is not supported; use alpaca or sharegpt")
    lf_cols = e.get("columns") or {}
    table = _LF_ALPACA if formatting == "alpaca" else _LF_SHAREGPT
    columns = {}
    for lf_name, col in lf_cols.items():
        if lf_name in table:
            columns[table[lf_name]] = col
        else:
            notes.append(f"column {lf_name!r} ({col}) is not used: Whetstone trains on text only")
    fmt = "preference" if e.get("ranking") else formatting
    tags = dict(e.get("tags") or {})
    if fmt == "preference" and formatting == "sharegpt":
        columns.setdefault("conversations", "conversations")
    if not rows:
        raise DataError(f"{source}: has no rows")
    spec = formats.FormatSpec(fmt, columns, tags)
    return Loaded(name, source, spec, rows, notes)
