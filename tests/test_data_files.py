"""A broken dataset file gets an error naming the file, the line and what to do, for every file type."""
from __future__ import annotations

import json

import pytest

from engine.data import files, sources
from engine.data.files import DataError


def _err(path) -> str:
    with pytest.raises(DataError) as e:
        sources.load(str(path))
    return str(e.value)


def test_jsonl_unparsable_line_is_named_exactly(tmp_path):
    p = tmp_path / "chat.jsonl"
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(40)]
    lines[36] = '{"instruction": "q36", "output": "a36"'  # line 37 is missing its closing brace
    p.write_text("\n".join(lines) + "\n")
    msg = _err(p)
    assert str(p) in msg and "line 37 " in msg and "truncated" in msg


def test_json_list_bad_row_names_its_line_and_a_missing_comma(tmp_path):
    p = tmp_path / "data.json"
    p.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c" "output": "d"}\n]\n')
    msg = _err(p)
    assert "line 3, column 22" in msg and "delimiter" in msg and "missing comma" in msg


def test_truncated_json_file(tmp_path):
    p = tmp_path / "data.json"
    p.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "outp')
    msg = _err(p)
    assert "truncated" in msg and str(p) in msg


def test_json_rows_know_their_lines(tmp_path):
    p = tmp_path / "data.json"
    p.write_text('[\n {"instruction": "a",\n  "output": "b"},\n\n {"instruction": "c", "output": "d"}\n]')
    rows = files.read_file(p)
    assert [(r.row, r.line) for r in rows] == [(1, 2), (2, 5)]


def test_json_that_is_really_jsonl_is_read(tmp_path):
    p = tmp_path / "data.json"
    p.write_text('{"text": "one"}\n{"text": "two"}\n')
    assert [r.data["text"] for r in files.read_file(p)] == ["one", "two"]


def test_non_utf8_file_names_the_line(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    msg = _err(p)
    assert "line 2 is not UTF-8" in msg and "iconv" in msg


def test_binary_file_is_refused(tmp_path):
    p = tmp_path / "data.csv"
    p.write_bytes(b"PK\x03\x04\x00\x00binary zip")
    assert "binary" in _err(p)


def test_empty_file(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text("\n\n")
    assert "empty" in _err(p)


def test_csv_row_with_an_unquoted_comma_names_its_line(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text("instruction,input,output\nHi,,Hello\nSay, hi,,Hello there\n")
    msg = _err(p)
    assert "line 3 has 4 fields but the header has 3" in msg


def test_csv_keeps_empty_strings_and_quoted_newlines(tmp_path):
    p = tmp_path / "data.csv"
    p.write_text('instruction,input,output\n"Two\nlines",,"Ok, fine"\n')
    rows = files.read_file(p)
    assert rows[0].data == {"instruction": "Two\nlines", "input": "", "output": "Ok, fine"}


def test_truncated_parquet_is_refused(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    good = tmp_path / "good.parquet"
    pq.write_table(pa.table({"instruction": ["a", "b"], "output": ["c", "d"]}), good)
    assert [r.data for r in files.read_file(good)] == [{"instruction": "a", "output": "c"},
                                                        {"instruction": "b", "output": "d"}]
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(good.read_bytes()[:40])
    msg = _err(bad)
    assert "not a readable Parquet file" in msg and str(bad) in msg


def test_a_row_that_is_not_an_object(tmp_path):
    p = tmp_path / "data.jsonl"
    p.write_text('{"text": "a"}\n["a", "b"]\n')
    assert "row 2 (line 2) is a JSON list" in _err(p)
