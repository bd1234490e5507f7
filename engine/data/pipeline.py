"""The datasets of a run config -> tokenised train / validation examples, and a report of what was
kept, truncated or dropped (nothing is skipped silently).

Order: read every dataset (train and eval) and check every row first, so a bad row anywhere fails
the run before any tokens are spent on training; then apply data.on_bad_rows / data.on_long_rows;
then split off data.val_size (unless data.eval_datasets names separate eval data).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field

from engine.config import RunConfig
from engine.data import checks, sources
from engine.data.files import DataError


@dataclass
class DataReport(checks.Counts):
    """A run's data: what the checks found in every dataset (checks.Counts), then what was kept,
    truncated or dropped, and the train / validation split. Written as the worker's `data` event."""
    kept: int = 0
    truncated: int = 0
    dropped_long: int = 0
    dropped_bad: int = 0
    dropped_no_target: int = 0
    train: int = 0
    val: int = 0
    formats: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def as_event(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v not in ([], {}, None)}


def split(examples: list, val_size: float, seed: int) -> tuple[list, list]:
    """(train, validation): a val_size share held out at random (at least one row, never all), each part
    kept in file order (the trainer shuffles every epoch)."""
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n_val = max(1, min(int(round(len(examples) * val_size)), len(examples) - 1)) if val_size > 0 else 0
    return [examples[i] for i in sorted(order[n_val:])], [examples[i] for i in sorted(order[:n_val])]


def _collect(cfg: RunConfig, names: list[str], tokenizer, report: DataReport, role: str) -> list[dict]:
    d = cfg.data
    examples: list[dict] = []
    for name in names:
        loaded = sources.load(name, d.format, d.columns)
        err = checks.stage_error(loaded, cfg.method.stage)
        if err:
            raise err
        report.formats[name] = loaded.spec.format
        report.notes += [f"{loaded.source}: {n}" for n in loaded.notes]
        items = checks.examine(loaded, tokenizer, d.cutoff_len, d.max_samples)
        counts = checks.Counts().add(items, d.cutoff_len)
        report.merge(counts)
        if counts.bad and d.on_bad_rows == "fail":
            raise checks.bad_rows_error(counts, loaded.source, role)
        for it in items:
            if it.problem:
                report.dropped_bad += 1
                continue
            enc = it.encoded
            if enc.truncated:
                if d.on_long_rows == "fail":
                    raise DataError(f"{it.where}: {enc.length} tokens, longer than data.cutoff_len={d.cutoff_len} "
                                    f"({counts.over_cutoff} {role} rows in {loaded.source} are); raise cutoff_len "
                                    "or set data.on_long_rows to truncate or drop")
                if d.on_long_rows == "drop":
                    report.dropped_long += 1
                    continue
                report.truncated += 1
            if enc.trained_tokens == 0:
                report.dropped_no_target += 1  # the reply was cut off entirely by cutoff_len
                continue
            examples.append({"input_ids": enc.input_ids, "labels": enc.labels})
    return examples


def build(cfg: RunConfig, tokenizer) -> tuple[list[dict], list[dict], DataReport]:
    report = DataReport()
    examples = _collect(cfg, cfg.data.datasets, tokenizer, report, "training")
    held_out = _collect(cfg, cfg.data.eval_datasets, tokenizer, report, "eval") if cfg.data.eval_datasets else []
    report.kept = len(examples) + len(held_out)
    if not examples:
        raise DataError("no usable training rows: every row was dropped (" + ", ".join(
            f"{k}={v}" for k, v in report.as_event().items() if isinstance(v, int) and v) +
            "); raise data.cutoff_len or check the files")
    if cfg.data.eval_datasets:
        if not held_out:
            raise DataError("data.eval_datasets: no usable eval rows; check the eval files")
        report.train, report.val = len(examples), len(held_out)
        return examples, held_out, report
    train, val = split(examples, cfg.data.val_size, cfg.train.seed)
    report.train, report.val = len(train), len(val)
    return train, val, report

