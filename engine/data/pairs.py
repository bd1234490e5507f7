"""Preference pairs for the trl stages (dpo, orpo, simpo, kto, rm): a run's datasets -> trl's
conversational rows, checked by engine.data (every bad row named), split like every other dataset
(engine.data.pipeline.split). Light: the rows are plain dicts; the worker hands them to trl."""
from __future__ import annotations

from engine.config import RunConfig
from engine.data import checks, formats, sources
from engine.data.files import DataError, where
from engine.data.pipeline import DataReport, split


def trl_rows(ex: formats.Preference, stage: str) -> list[dict]:
    """One parsed pair as trl's rows: prompt / chosen / rejected conversations, or for kto (unpaired) one
    good and one bad example."""
    prompt = list(ex.prompt_messages)
    good, bad = ([{"role": "assistant", "content": ex.chosen}], [{"role": "assistant", "content": ex.rejected}])
    if stage == "kto":
        return [{"prompt": prompt, "completion": good, "label": True},
                {"prompt": prompt, "completion": bad, "label": False}]
    return [{"prompt": prompt, "chosen": good, "rejected": bad}]


def build(cfg: RunConfig) -> tuple[list[dict], list[dict], DataReport]:
    """(train, validation, report) of the stage's rows."""
    d, report, out = cfg.data, DataReport(), []
    for name in d.datasets:
        loaded = sources.load(name, d.format, d.columns)
        err = checks.stage_error(loaded, cfg.method.stage)
        if err:
            raise err
        report.formats[name] = loaded.spec.format
        rows = loaded.rows[: d.max_samples] if d.max_samples else loaded.rows
        report.rows += len(rows)
        for r in rows:
            ex = formats.convert(r.data, loaded.spec)
            if isinstance(ex, formats.RowProblem):
                if d.on_bad_rows == "fail":
                    raise DataError(f"{where(loaded.source, r)}: {ex.message}")
                report.dropped_bad += 1
                report.problems.append(f"{where(loaded.source, r)}: {ex.message}")
                continue
            out += trl_rows(ex, cfg.method.stage)
    if not out:
        raise DataError("no usable preference rows; check the files")
    train, val = split(out, d.val_size, cfg.train.seed)
    report.kept, report.train, report.val = len(out), len(train), len(val)
    return train, val, report
