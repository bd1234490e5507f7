"""The datasets of a run config -> tokenised train / validation examples, and a report of what was
kept, truncated or dropped (nothing is skipped silently)."""
from __future__ import annotations

import random
from dataclasses import dataclass, field

from engine.config import RunConfig
from engine.data import encode, formats


@dataclass
class DataReport:
    rows: int = 0
    kept: int = 0
    truncated: int = 0
    dropped_long: int = 0
    dropped_no_target: int = 0
    train: int = 0
    val: int = 0
    formats: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def build(cfg: RunConfig, tokenizer) -> tuple[list[dict], list[dict], DataReport]:
    report = DataReport()
    examples: list[dict] = []
    for name in cfg.data.datasets:
        source, rows = formats.read_rows(name)
        if cfg.data.max_samples:
            rows = rows[: cfg.data.max_samples]
        fmt = formats.detect(rows, source)
        report.formats[name] = fmt
        report.rows += len(rows)
        for i, row in enumerate(rows):
            where = f"{source}, row {i}"
            if fmt == "text":
                text = row.get("text")
                if not isinstance(text, str) or not text.strip():
                    raise formats.DataError(f"{where}: `text` is empty")
                enc = encode.encode_text(tokenizer, text, cfg.data.cutoff_len)
            else:
                enc = encode.encode_messages(tokenizer, formats.to_messages(row, fmt, where), cfg.data.cutoff_len)
            if enc.truncated:
                if cfg.data.on_long_rows == "fail":
                    raise formats.DataError(f"{where}: longer than data.cutoff_len={cfg.data.cutoff_len} tokens; "
                                            "raise cutoff_len or set data.on_long_rows to truncate or drop")
                if cfg.data.on_long_rows == "drop":
                    report.dropped_long += 1
                    continue
                report.truncated += 1
            if enc.trained_tokens == 0:
                report.dropped_no_target += 1  # the reply was cut off entirely by cutoff_len
                continue
            examples.append({"input_ids": enc.input_ids, "labels": enc.labels})
    report.kept = len(examples)
    if not examples:
        raise formats.DataError("no usable rows: every row was dropped (see the counts above); raise "
                                "data.cutoff_len or check the files")
    rng = random.Random(cfg.train.seed)
    order = list(range(len(examples)))
    rng.shuffle(order)
    n_val = int(round(len(examples) * cfg.data.val_size)) if cfg.data.val_size > 0 else 0
    if cfg.data.val_size > 0:
        n_val = max(1, min(n_val, len(examples) - 1))
    val = [examples[i] for i in order[:n_val]]
    train = [examples[i] for i in order[n_val:]]
    report.train, report.val = len(train), len(val)
    return train, val, report
