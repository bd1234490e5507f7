"""Prompts for the reinforcement-learning stages (grpo, ppo): a run's datasets -> rows of a prompt (the
conversation up to the reply), its reference answer and the row's other fields, checked like every other
dataset (each bad row named) and split like every other (engine.data.pipeline.split). Light: plain dicts;
the worker hands them to trl.

Any conversation or preference format gives prompts: alpaca (system, history, instruction + input;
reference = output), sharegpt / messages (the turns before the last reply; reference = that reply),
preference (the prompt; reference = chosen), so every row has a reference answer. A column named
method.rl.answer_column, when a row has one, is the reference instead. Plain text has no prompt and is
refused.
"""
from __future__ import annotations

from engine.config import RunConfig
from engine.data import checks, formats, sources
from engine.data.files import DataError, where
from engine.data.pipeline import DataReport, split

# Keys trl passes to reward functions itself, so a dataset column may not take them.
RESERVED = ("prompt", "completion", "completions", "prompts", "completion_ids", "trainer_state", "log_extra",
            "log_metric", "environments")


def prompt_of(example: formats.Example) -> tuple[list[dict], str | None]:
    """(the prompt's messages, the reply the row gives) of one parsed row."""
    if isinstance(example, formats.Preference):
        return list(example.prompt_messages), example.chosen
    if isinstance(example, formats.Conversation):
        msgs = list(example.messages)
        last = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
        return msgs[:last], msgs[last]["content"]
    raise TypeError(f"{type(example).__name__} rows have no prompt")


def _reference(raw: dict, reply: str | None, column: str) -> str | None:
    v = raw.get(column)
    if v is not None and not isinstance(v, (dict, list)) and str(v).strip():
        return str(v).strip()
    return reply.strip() if isinstance(reply, str) and reply.strip() else None


def _columns(raw: dict, spec: formats.FormatSpec) -> dict:
    """The row's own scalar fields that are not part of its prompt, for a Python reward's **columns."""
    used = {spec.col(c) for c in formats.COLUMNS.get(spec.format, ())}
    return {k: v for k, v in raw.items() if isinstance(k, str) and k.isidentifier() and k not in used
            and k not in RESERVED and isinstance(v, (str, int, float, bool))}


def row_problem(prompt: list[dict]) -> str | None:
    if not prompt or prompt[-1]["role"] not in ("user", "tool"):
        return "has no user turn before its reply to use as the prompt"
    return None


def _rows(cfg: RunConfig, names: list[str], report: DataReport, role: str) -> list[dict]:
    d, rl = cfg.data, cfg.method.rl
    out: list[dict] = []
    for name in names:
        loaded = sources.load(name, d.format, d.columns)
        err = checks.stage_error(loaded, cfg.method.stage)
        if err:
            raise err
        report.formats[name] = loaded.spec.format
        report.notes += [f"{loaded.source}: {n}" for n in loaded.notes]
        rows = loaded.rows[: d.max_samples] if d.max_samples else loaded.rows
        bad: list[str] = []
        for r in rows:
            report.rows += 1
            ex = formats.convert(r.data, loaded.spec)
            problem = ex.message if isinstance(ex, formats.RowProblem) else None
            if problem is None:
                prompt, reply = prompt_of(ex)
                answer = _reference(r.data, reply, rl.answer_column)
                problem = row_problem(prompt)
            if problem:
                bad.append(f"{where(loaded.source, r)}: {problem}")
                report.dropped_bad += 1
                continue
            extra = _columns(r.data, loaded.spec)
            extra.pop("answer", None)
            out.append({"prompt": prompt, "answer": answer, **extra})
        if bad:
            report.problems += bad[:20]
            if d.on_bad_rows == "fail":
                more = f" (and {len(bad) - 10} more)" if len(bad) > 10 else ""
                raise DataError(f"{len(bad)} of {len(rows)} {role} rows in {loaded.source} cannot be used{more}:\n  "
                                + "\n  ".join(bad[:10]) + "\nFix them, or set data.on_bad_rows to drop to train "
                                "without them (they are counted in the data report)")
    return _same_columns(out)


def _same_columns(rows: list[dict]) -> list[dict]:
    """Every row with the same keys, and each column of one type (a table needs both): a field some rows
    lack is None there; a column mixing numbers and text becomes text."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    for k in keys:
        if k == "prompt":
            continue
        kinds = {type(r[k]) for r in rows if r.get(k) is not None}
        mixed = len(kinds) > 1
        for r in rows:
            v = r.get(k)
            r[k] = str(v) if mixed and v is not None else v
    return rows


def build(cfg: RunConfig) -> tuple[list[dict], list[dict], DataReport]:
    """(train, validation, report): rows of prompt (messages), answer (reference or None) and other fields."""
    report = DataReport()
    train = _rows(cfg, cfg.data.datasets, report, "training")
    if not train:
        raise DataError("no usable prompts: every row was dropped; check the files")
    if cfg.data.eval_datasets:
        val = _rows(cfg, cfg.data.eval_datasets, report, "eval")
        if not val:
            raise DataError("data.eval_datasets: no usable eval prompts; check the eval files")
    else:
        train, val = split(train, cfg.data.val_size, cfg.train.seed)
    report.kept, report.train, report.val = len(train) + len(val), len(train), len(val)
    return train, val, report


def problems(cfg: RunConfig, loaded: sources.Loaded, role: str = "training") -> list[str]:
    """Rows that cannot give a prompt: what the launcher refuses before a run folder is made."""
    d = cfg.data
    bad = []
    for r in (loaded.rows[: d.max_samples] if d.max_samples else loaded.rows):
        ex = formats.convert(r.data, loaded.spec)
        if isinstance(ex, formats.RowProblem):
            continue  # the format check reports these
        problem = row_problem(prompt_of(ex)[0])
        if problem:
            bad.append(f"{where(loaded.source, r)}: {problem}")
    if bad and d.on_bad_rows == "fail":
        return [f"{len(bad)} {role} rows in {loaded.source} cannot be used as prompts:\n  " + "\n  ".join(bad[:10])]
    return []
