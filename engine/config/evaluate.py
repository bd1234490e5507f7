"""The evaluation job's typed settings: which run (and checkpoint), which held-out file, how long the
answers may be. Light (stdlib + yaml). The UI and the CLI write one of these to
saves/<run>/eval/<name>/config.yaml and start `python -m engine.evaluate --config <file>`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from engine.config.schema import F, build_typed
from engine.runs.atomic import write_text


@dataclass
class EvalConfig:
    run_dir: str = F("", "The run to evaluate (a folder in saves/).")
    dataset: str = F("", "Held-out conversations: a bundled name or a .json / .jsonl / .csv / .parquet file.")
    checkpoint: str = F("", "'' = the run's final weights; else a checkpoint name such as 'checkpoint-20'.")
    max_new_tokens: int = F(64, "Longest answer generated per prompt, in tokens.", min=1, max=32768)
    max_rows: Optional[int] = F(None, "Score at most this many rows (empty = all).", min=1)


class EvalConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Invalid evaluation:\n" + "\n".join(f"  - {p}" for p in problems))


def from_dict(d: dict) -> EvalConfig:
    cfg, problems = build_typed(EvalConfig, d)
    if problems:
        raise EvalConfigError(problems)
    return cfg


def save(cfg: EvalConfig, path: str | Path) -> Path:
    return write_text(Path(path), yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def load(path: str | Path) -> EvalConfig:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EvalConfigError([f"config: cannot read {path}: {e}"]) from None
    return from_dict(data or {})
