"""Dataset files as users really have them: truncated, binary, not UTF-8, nested absurdly deep, with
gigantic rows, with rows of any shape. Reading one either works or raises the project's DataError
naming the file, never another exception and never a hang. Fuzzed with hypothesis through the
public read-and-convert path a run uses."""
from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

try:  # the rewritten data pipeline: engine.data.sources / files
    from engine.data import sources as _sources
    from engine.data.files import DataError
except ImportError:  # the first pipeline: engine.data.formats.read_rows
    _sources = None
    from engine.data.formats import DataError
from engine.data import formats

SUFFIXES = [".json", ".jsonl", ".csv", ".parquet"]
TIME_LIMIT_S = 30.0
FUZZ = settings(max_examples=25, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def read_dataset(path: Path) -> int:
    """Read and convert every row the way a run does; returns the rows read."""
    if _sources is not None:
        loaded = _sources.load(str(path))
        for r in loaded.rows:
            formats.convert(r.data, loaded.spec)  # a bad row comes back as a RowProblem naming it
        return len(loaded.rows)
    source, rows = formats.read_rows(str(path))
    fmt = formats.detect(rows, source)
    for _ in formats.iter_messages(rows, fmt, source):
        pass
    return len(rows)


def check(path: Path) -> None:
    t0 = time.time()
    try:
        read_dataset(path)
    except DataError as e:
        assert path.name in str(e), f"the error does not name the file: {e}"
    assert time.time() - t0 < TIME_LIMIT_S, "reading took too long"


_counter = [0]


def write(tmp: Path, suffix: str, data: bytes) -> Path:
    _counter[0] += 1
    p = tmp / f"set{_counter[0]}{suffix}"
    p.write_bytes(data)
    return p


GOOD_ROWS = [{"instruction": f"Question {i}?", "input": "", "output": f"Answer {i}, with ünïcode."} for i in range(6)]
GOOD = {".json": json.dumps(GOOD_ROWS, ensure_ascii=False).encode(),
        ".jsonl": "\n".join(json.dumps(r, ensure_ascii=False) for r in GOOD_ROWS).encode(),
        ".csv": ("instruction,input,output\n" + "\n".join(f'"{r["instruction"]}",,"{r["output"]}"'
                                                         for r in GOOD_ROWS)).encode()}


@pytest.fixture(scope="module")
def tmp(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("datasets")


@FUZZ
@given(suffix=st.sampled_from(SUFFIXES), data=st.binary(max_size=2000))
def test_binary_junk_in_any_format_is_a_data_error(tmp, suffix, data):
    check(write(tmp, suffix, data))


@FUZZ
@given(suffix=st.sampled_from(list(GOOD)), cut=st.floats(0.0, 1.0))
def test_a_truncated_file_is_read_or_refused_with_a_data_error(tmp, suffix, cut):
    data = GOOD[suffix]
    check(write(tmp, suffix, data[: int(len(data) * cut)]))


@FUZZ
@given(suffix=st.sampled_from(list(GOOD)), junk=st.binary(min_size=1, max_size=8).filter(
    lambda b: not all(c < 128 for c in b)))
def test_text_that_is_not_utf8_is_a_data_error_naming_the_file(tmp, suffix, junk):
    data = GOOD[suffix]
    check(write(tmp, suffix, data[: len(data) // 2] + junk + data[len(data) // 2:]))


@pytest.mark.parametrize("depth", [200, 5_000, 200_000])
@pytest.mark.parametrize("suffix", [".json", ".jsonl"])
def test_absurdly_deep_nesting_is_a_data_error_not_a_crash(tmp, suffix, depth):
    nested = "[" * depth + "]" * depth
    row = '{"instruction": "hi", "output": "x", "history": ' + nested + "}"
    check(write(tmp, suffix, (f"[{row}]" if suffix == ".json" else row).encode()))


def test_a_gigantic_row_is_read_or_refused_in_bounded_time(tmp):
    huge = "word " * 2_000_000  # a 10 MB answer
    row = {"instruction": "Summarise.", "input": "", "output": huge}
    check(write(tmp, ".jsonl", (json.dumps(GOOD_ROWS[0]) + "\n" + json.dumps(row)).encode()))


KEYS = ["instruction", "input", "output", "system", "history", "conversations", "messages", "from", "value",
        "role", "content", "text", "chosen", "rejected", "tools"]
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30),
                                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=20),
                                     st.sampled_from(["human", "gpt", "user", "assistant", "system", ""])),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)),
                           max_leaves=15)
rows = st.lists(st.dictionaries(st.sampled_from(KEYS), json_values, min_size=1, max_size=5), min_size=1, max_size=6)


@FUZZ
@given(rows=rows, as_lines=st.booleans())
# Shapes the fuzzer once found crashing the converter (kept so they are tried on every run):
@example(rows=[{"chosen": [None, None], "rejected": []}], as_lines=False)  # chosen turns that are not objects
@example(rows=[{"instruction": None, "input": None, "conversations": [{"from": []}]}], as_lines=False)  # a list role
@example(rows=[{"output": [], "instruction": None, "history": 1}], as_lines=False)  # a history that is a number
def test_rows_of_any_shape_convert_or_are_refused_by_row(tmp, rows, as_lines):
    if as_lines:
        p = write(tmp, ".jsonl", "\n".join(json.dumps(r) for r in rows).encode())
    else:
        p = write(tmp, ".json", json.dumps(rows).encode())
    check(p)
