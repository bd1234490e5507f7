"""The data section's new fields round-trip through YAML and explain every mistake."""
from __future__ import annotations

import pytest

from engine import config as C


def test_format_columns_and_eval_datasets_round_trip():
    cfg = C.from_dict({"data": {"datasets": ["identity"], "format": "alpaca", "on_bad_rows": "drop",
                                "columns": {"instruction": "question", "output": "answer"},
                                "eval_datasets": ["identity_eval"]}})
    assert C.from_yaml(C.to_yaml(cfg)) == cfg
    assert "data.columns  (dict[str, str], default: {})" in C.describe_fields()


def test_data_mistakes_are_all_named_at_once():
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"data": {"format": "jsonl", "columns": {"question": "q", "output": ""},
                              "eval_datasets": ["identity_eval", "nope.jsonl"], "val_size": 0.1}})
    p = "\n".join(e.value.problems)
    assert "data.format: 'jsonl' is not one of 'auto', 'alpaca'" in p
    assert "data.columns: 'question' is not a column name any format uses" in p
    assert "data.columns: 'output' maps to an empty column name" in p
    assert "data.eval_datasets[1]: no file at 'nope.jsonl'" in p
    assert "data.val_size: set it to 0 when data.eval_datasets names separate eval data" in p
