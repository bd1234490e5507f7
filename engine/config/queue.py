"""The run queue's typed settings, kept beside the queue in saves/.queue/settings.yaml. Light (stdlib + yaml).

One setting today: which GPUs queued runs may share out. Empty (the default) runs the queue one run at a
time on the whole machine; a list of two or more GPU indices lets queued runs start side by side, each on
GPUs of its own (CUDA_VISIBLE_DEVICES set per worker; engine.runs.placement decides which).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import yaml

from engine.config.schema import F, build_typed
from engine.runs.atomic import write_text

SETTINGS_FILE = "settings.yaml"


@dataclass
class QueueSettings:
    gpus: list[int] = F([], "GPU indices queued runs may use at the same time, e.g. [0, 1, 2, 3]: each queued "
                            "one-process run takes one free GPU of these (CUDA_VISIBLE_DEVICES), a run of N "
                            "processes takes N. Empty = one run at a time, on every GPU.", label="GPUs for queued runs")


class QueueSettingsError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Invalid queue settings:\n" + "\n".join(f"  - {p}" for p in problems))


def from_dict(data: dict) -> QueueSettings:
    s, problems = build_typed(QueueSettings, data)
    problems += [f"gpus: {g} is not a GPU index (0, 1, 2, ...)" for g in s.gpus if g < 0]
    if len(set(s.gpus)) != len(s.gpus):
        problems.append(f"gpus: {s.gpus} names a GPU twice")
    if problems:
        raise QueueSettingsError(problems)
    return s


def parse_gpus(text: str) -> QueueSettings:
    """Settings from the GPU list as typed in a box or on the command line: '0,1,2,3' (empty = none)."""
    parts = [p.strip() for p in str(text or "").replace(" ", ",").split(",") if p.strip()]
    bad = [p for p in parts if not p.isdigit()]
    if bad:
        raise QueueSettingsError([f"gpus: {', '.join(map(repr, bad))} is not a GPU index; write them as 0,1,2,3"])
    return from_dict({"gpus": [int(p) for p in parts]})


def load(folder: Path) -> QueueSettings:
    """The settings in a queue folder; defaults when none were saved (or the file is unreadable)."""
    try:
        return from_dict(yaml.safe_load((Path(folder) / SETTINGS_FILE).read_text(encoding="utf-8")) or {})
    except (OSError, yaml.YAMLError, QueueSettingsError):
        return QueueSettings()


def save(folder: Path, settings: QueueSettings) -> Path:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return write_text(Path(folder) / SETTINGS_FILE, yaml.safe_dump(dataclasses.asdict(settings), sort_keys=False))
