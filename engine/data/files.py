"""Reading dataset files into rows, with errors that name the file, the line and what to do.

Light module (stdlib + pyarrow; `datasets` only for hub ids, imported lazily): the Dataset tab uses
it too. JSON and JSON Lines are parsed here line by line, so a broken file gets its exact line
number; CSV goes through the stdlib reader (exact line numbers, empty strings stay empty strings);
Parquet through pyarrow (what `datasets` itself uses). Every row remembers its row number (1-based)
and, for text files, the line it starts on.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")


class DataError(ValueError):
    """A dataset problem, naming the file, the row or line, and what to do."""


@dataclass(frozen=True)
class SourceRow:
    data: dict
    row: int            # 1-based position in its file
    line: int | None    # 1-based line the row starts on (json / jsonl / csv), None for parquet / hub


def where(source: str, r: SourceRow) -> str:
    """'data/x.jsonl, row 12 (line 14)': how every message points at a row."""
    return f"{source}, row {r.row}" + (f" (line {r.line})" if r.line is not None else "")


def _line_of(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def read_text(path: Path) -> str:
    """The file as text; refuses binary, non-UTF-8 and empty files with the line at fault."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"{path}: cannot be read: {e.strerror or e}") from None
    if not raw.strip():
        raise DataError(f"{path}: the file is empty; add rows or pick another file")
    nul = raw.find(b"\x00", 0, 65536)
    if nul >= 0:
        line = raw.count(b"\n", 0, nul) + 1
        raise DataError(f"{path}: looks like a binary file, not {path.suffix.lstrip('.')} text (a NUL byte on "
                        f"line {line}); check that it is the right file, or that it "
                        "was not saved as UTF-16")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{path}: line {line} is not UTF-8 text (byte 0x{raw[e.start]:02X} at column {col}); "
                        "re-save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8 in > out`)") from None


def _object(value, path: Path, row: int, line: int) -> dict:
    if not isinstance(value, dict):
        raise DataError(f"{path}: row {row} (line {line}) is a JSON {type(value).__name__}, not an object with "
                        "fields; every row must look like {\"instruction\": ..., \"output\": ...}")
    return value


def _jsonl(text: str, path: Path) -> list[SourceRow]:
    rows: list[SourceRow] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as e:
            hint = "the line ends early: truncated?" if e.pos >= len(line.rstrip()) else f"at column {e.colno}"
            raise DataError(f"{path}: line {n} is not valid JSON ({e.msg}; {hint}); each line must hold one "
                            "complete JSON object") from None
        rows.append(SourceRow(_object(value, path, len(rows) + 1, n), len(rows) + 1, n))
    return rows


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return i


def _json_error(path: Path, text: str, e: json.JSONDecodeError, what: str) -> DataError:
    if e.pos >= len(text.rstrip()):
        return DataError(f"{path}: ends early at line {e.lineno} ({e.msg}); the file looks truncated: "
                         "restore the missing end or re-export it")
    return DataError(f"{path}: line {e.lineno}, column {e.colno} is not valid JSON ({e.msg}) in {what}; "
                     "fix that line (a missing comma or quote?)")


def _json(text: str, path: Path) -> list[SourceRow]:
    """A JSON list of objects, each row with the line it starts on. A .json file that is really JSON Lines
    (one object per line) is read as such."""
    dec = json.JSONDecoder()
    i = _skip_ws(text, 0)
    if text[i] == "{":
        try:
            value, end = dec.raw_decode(text, i)
        except json.JSONDecodeError as e:
            raise _json_error(path, text, e, "the first row") from None
        if _skip_ws(text, end) < len(text):
            return _jsonl(text, path)  # JSON Lines saved as .json
        if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
            raise DataError(f"{path}: holds one object with a list under {next(iter(value))!r}; Whetstone expects "
                            "the list of rows itself at the top level ([{...}, {...}])")
        return [SourceRow(value, 1, _line_of(text, i))]
    if text[i] != "[":
        raise DataError(f"{path}: line {_line_of(text, i)} starts with {text[i]!r}; a .json dataset must be a list "
                        "of objects ([{...}, ...]) or JSON Lines")
    rows: list[SourceRow] = []
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "]":
        return rows
    while True:
        start = _skip_ws(text, i)
        try:
            value, end = dec.raw_decode(text, start)
        except json.JSONDecodeError as e:
            raise _json_error(path, text, e, f"row {len(rows) + 1}") from None
        line = _line_of(text, start)
        rows.append(SourceRow(_object(value, path, len(rows) + 1, line), len(rows) + 1, line))
        i = _skip_ws(text, end)
        if i >= len(text):
            raise DataError(f"{path}: ends early after row {len(rows)} (line {_line_of(text, end)}): the closing ']' "
                            "is missing; the file looks truncated")
        if text[i] == "]":
            if _skip_ws(text, i + 1) < len(text):
                raise DataError(f"{path}: line {_line_of(text, _skip_ws(text, i + 1))} has text after the closing "
                                "']'; remove it")
            return rows
        if text[i] != ",":
            raise DataError(f"{path}: line {_line_of(text, i)}: expected ',' or ']' after row {len(rows)}, found "
                            f"{text[i]!r}; a comma is probably missing")
        i += 1


def _csv(text: str, path: Path) -> list[SourceRow]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except (StopIteration, csv.Error) as e:
        raise DataError(f"{path}: line 1 is not a CSV header: {e}") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise DataError(f"{path}: line 1 (the header) has no column names")
    dupes = sorted({h for h in header if header.count(h) > 1})
    if dupes:
        raise DataError(f"{path}: line 1 names column {dupes[0]!r} twice; give every column its own name")
    rows: list[SourceRow] = []
    while True:
        start = reader.line_num + 1
        try:
            rec = next(reader)
        except StopIteration:
            return rows
        except csv.Error as e:
            raise DataError(f"{path}: line {reader.line_num} is not valid CSV ({e}); check its quotes") from None
        if not rec or not any(v.strip() for v in rec):
            continue  # a blank line, not a row
        if len(rec) != len(header):
            raise DataError(f"{path}: line {start} has {len(rec)} fields but the header has {len(header)}; an "
                            "unquoted comma or a missing field? Quote fields that contain commas")
        rows.append(SourceRow(dict(zip(header, rec)), len(rows) + 1, start))


def _parquet(path: Path) -> list[SourceRow]:
    import pyarrow.parquet as pq
    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for truncated or foreign files
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise DataError(f"{path}: is not a readable Parquet file ({first}); it may be truncated or another "
                        "format renamed to .parquet: re-export it") from None
    return [SourceRow(r, i + 1, None) for i, r in enumerate(table.to_pylist())]


def read_file(path: str | Path) -> list[SourceRow]:
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {suffix!r}; use .json, .jsonl, .csv or .parquet")
    if suffix == ".parquet":
        return _parquet(path)
    text = read_text(path)
    return {".json": _json, ".jsonl": _jsonl, ".csv": _csv}[suffix](text, path)


def read_folder(path: str | Path) -> list[SourceRow]:
    files = sorted(p for p in Path(path).iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise DataError(f"{path}: the folder holds no .json/.jsonl/.csv/.parquet file")
    rows: list[SourceRow] = []
    for f in files:
        rows += [SourceRow(r.data, len(rows) + k + 1, None) for k, r in enumerate(read_file(f))]
    return rows


def read_hub(repo_id: str, split: str = "train") -> list[SourceRow]:
    import datasets
    datasets.disable_progress_bars()
    try:
        ds = datasets.load_dataset(repo_id, split=split)
    except Exception as e:
        first = str(e).splitlines()[0][:300] if str(e) else type(e).__name__
        raise DataError(f"{repo_id}: could not load from the hub ({first}); check the id and the network, or "
                        "download the files and give their path") from None
    return [SourceRow(dict(r), i + 1, None) for i, r in enumerate(ds)]
