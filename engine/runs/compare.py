"""Comparing runs and picking the best: one row of figures per run, read from its events through the one
fold (engine.runs.progress) and the metric table's names (engine.runs.metrics), plus its latest held-out
evaluation (engine.runs.eval_client); the config fields that differ between the runs as columns; sorted,
with the best run marked. The CLI (`python app.py compare`, the end of `python app.py sweep`) and the
Train tab's comparison show the same table. Light.

Which run is best: the lowest best eval loss when every finished run has a validation split, else the
lowest held-out loss when every one was evaluated, else the lowest final train loss. Only finished runs
can be best (unless none finished).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from engine import config as C
from engine.runs import eval_client, metrics
from engine.runs.events import EVENTS_FILE, read_all
from engine.runs.processes import worker_alive, worker_info
from engine.runs.progress import fold
from engine.runs.store import run_config


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    better: str  # "min" or "max"
    digits: int = 4


COLUMNS = (
    Column("best_eval_loss", "best eval loss", "min"),
    Column("eval_loss", "final eval loss", "min"),
    Column("train_loss", "final train loss", "min"),
    Column("tokens_per_s", "tokens/s", "max", 1),
    Column("peak_gib", "peak memory GiB", "min", 3),
    Column("wall_s", "wall s", "min", 0),
    Column("heldout_rouge_l", "held-out ROUGE-L", "max"),
    Column("heldout_loss", "held-out loss", "min"),
)
BY_KEY = {c.key: c for c in COLUMNS}
RANK_BY = ("best_eval_loss", "heldout_loss", "train_loss")  # the first one every finished run has decides
HIDDEN_FIELDS = ("output.run_name", "output.saves_dir")


@dataclass
class RunFigures:
    name: str
    path: Path
    status: str = "unknown"
    step: int = 0
    total_steps: Optional[int] = None
    config: dict = field(default_factory=dict)      # dotted field -> value
    values: dict = field(default_factory=dict)      # column key -> number or None
    memory: str = ""                                # what peak_gib measured: "GPU" (VRAM) or "process" (RSS)


def flat_config(run_dir: Path) -> dict:
    try:
        cfg = run_config(run_dir)
    except (OSError, C.ConfigError):
        return {}
    return {k: C.get(cfg, k) for k, *_ in C.iter_fields() if k not in HIDDEN_FIELDS}


def _peak(events: list[dict]) -> tuple[Optional[float], str]:
    """The highest memory reading of any rank: GPU memory when the run measured it, else process memory."""
    gib = {m.name for m in metrics.METRICS if m.unit == "GiB"}
    gpu, host = [], []
    for e in events:
        for k, v in e.items():
            name, _ = metrics.split_rank(k)
            if name in gib and isinstance(v, (int, float)) and not isinstance(v, bool):
                (gpu if name.startswith("vram") else host).append(float(v))
    if gpu:
        return max(gpu), "GPU"
    return (max(host), "process") if host else (None, "")


def _wall(run_dir: Path, prog) -> Optional[float]:
    """From the worker's start (its imports come before its first event) to the run's last event."""
    if prog.first_t is None or prog.last_t is None:
        return None
    began = (worker_info(run_dir) or {}).get("started")
    first = min(prog.first_t, began) if isinstance(began, (int, float)) else prog.first_t
    return prog.last_t - first


def measure(run_dir: str | Path) -> RunFigures:
    """A run's figures, from its events (read once) and its latest held-out evaluation."""
    run_dir = Path(run_dir)
    events = read_all(run_dir / EVENTS_FILE)
    prog = fold(events)
    status, _ = prog.verdict(worker_alive(run_dir), began=(run_dir / EVENTS_FILE).exists())
    rates = [float(e[m.name]) for e in events if e.get("kind") == "train" for m in metrics.on_chart("throughput")
             if isinstance(e.get(m.name), (int, float))]
    peak, memory = _peak(events)
    values: dict[str, Any] = {
        "best_eval_loss": prog.best_eval_loss, "eval_loss": prog.eval_loss, "train_loss": prog.final_loss,
        "tokens_per_s": statistics.median(rates) if rates else None, "peak_gib": peak,
        "wall_s": _wall(run_dir, prog),
    }
    done = eval_client.past_evals(run_dir)
    summary = ((eval_client.results(done[0]) or {}).get("summary") or {}) if done else {}
    values["heldout_rouge_l"] = summary.get("rouge_l_tuned")
    values["heldout_loss"] = summary.get("loss_tuned")
    return RunFigures(name=run_dir.name, path=run_dir, status=status, step=prog.step, total_steps=prog.total_steps,
                      config=flat_config(run_dir), values=values, memory=memory)


def differing(runs: list[RunFigures]) -> list[str]:
    """The config fields whose values are not the same in every run, in the config's order."""
    keys = [k for k, *_ in C.iter_fields() if k not in HIDDEN_FIELDS]
    return [k for k in keys if len({yaml.safe_dump(r.config.get(k)) for r in runs}) > 1]


def rank_by(runs: list[RunFigures]) -> str:
    """The column that decides the best run (see the module's note)."""
    finished = [r for r in runs if r.status == "finished"] or runs
    for key in RANK_BY:
        if finished and all(r.values.get(key) is not None for r in finished):
            return key
    return "train_loss"


def ordered(runs: list[RunFigures], key: str) -> list[RunFigures]:
    """Best first by one column; runs without that figure last."""
    col = BY_KEY[key]
    sign = 1 if col.better == "min" else -1
    return sorted(runs, key=lambda r: (r.values.get(key) is None, sign * (r.values.get(key) or 0)))


def best(runs: list[RunFigures], key: Optional[str] = None) -> Optional[RunFigures]:
    key = key or rank_by(runs)
    pool = [r for r in runs if r.status == "finished"] or runs
    pool = [r for r in pool if r.values.get(key) is not None]
    return ordered(pool, key)[0] if pool else None


@dataclass
class Table:
    headers: list[str]
    rows: list[list]        # numbers stay numbers (a UI can sort them)
    best: Optional[str]     # the best run's name
    by: str                 # the column that decided it
    fields: list[str]       # the differing config fields shown


def _short(v: Any) -> Any:
    if isinstance(v, (int, float, str)) or v is None:
        return v
    return yaml.safe_dump(v, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()


def table(runs: list[RunFigures], sort_by: Optional[str] = None) -> Table:
    """The comparison: best run marked '*', sorted by sort_by (default: the column that picks the best)."""
    by = rank_by(runs)
    top = best(runs, by)
    fields = differing(runs)
    cols = [c for c in COLUMNS if any(r.values.get(c.key) is not None for r in runs)]
    kinds = {r.memory for r in runs if r.memory}
    memory = f"peak {kinds.pop()} memory GiB" if len(kinds) == 1 else None  # GPU (VRAM) or process (RSS)
    headers = ["best", "run", "status", *fields,
               *(memory if c.key == "peak_gib" and memory else c.label for c in cols)]
    rows = []
    for r in ordered(runs, sort_by if sort_by in BY_KEY else by):
        nums = [None if r.values.get(c.key) is None else round(float(r.values[c.key]), c.digits) for c in cols]
        rows.append(["*" if top is r else "", r.name, r.status, *(_short(r.config.get(k)) for k in fields), *nums])
    return Table(headers, rows, top.name if top else None, by, fields)


def text(t: Table) -> str:
    """The table as aligned text for a terminal, and a line naming the best run."""
    cells = [t.headers] + [["" if v is None else (f"{v:g}" if isinstance(v, float) else str(v)) for v in row]
                           for row in t.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(t.headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if t.best:
        lines.append(f"\nbest: {t.best} (lowest {BY_KEY[t.by].label})")
    return "\n".join(lines)


def resolve(saves: Path, args: list[str]) -> tuple[list[Path], list[str]]:
    """Run folders from what a user typed: run folders, run names in saves/, or sweep names. (runs, problems)"""
    from engine.runs.sweep import manifest
    runs, problems = [], []
    for a in args:
        for candidate in (Path(a), Path(saves) / a):
            if (candidate / "config.yaml").is_file():
                runs.append(candidate)
                break
        else:
            record = manifest(saves, a)
            if record is None:
                problems.append(f"{a}: not a run folder, a run in {saves}, or a sweep's name")
                continue
            found = [Path(saves) / n for n in record.get("runs", []) if (Path(saves) / n / "config.yaml").is_file()]
            if not found:
                problems.append(f"{a}: none of the sweep's runs has started yet")
            runs += found
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    return unique, problems
