"""The chat settings: what the chat worker loads (ChatSource) and how it samples (GenerationParams);
typed, light (stdlib only), shared by the UI, the CLI and the worker, which receives them as JSON
over its stdin.

A source is one of:
- base:   a model from the model list, a local folder or a hub id (``model``)
- run:    a training run's final adapter / model, or one of its checkpoints (``run_dir`` +
          ``checkpoint``, empty = final); the base model is the one the run trained
- merged: a merged export folder (``model``), loaded with plain transformers
- gguf:   a GGUF file (``model``), answered by llama.cpp (llama-cpp-python) on the CPU, with the chat template
          and end-of-turn token its metadata carries; side by side, the merged folder it was exported into
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from engine.config.schema import build_typed
from engine.runs.paths import unusable_path

SourceKind = Literal["base", "run", "merged", "gguf"]


@dataclass(frozen=True)
class ChatSource:
    kind: SourceKind = "base"
    model: str = "smollm2-135m-instruct"
    """Base model name / folder / hub id (kind=base), the merged export folder (kind=merged), or the .gguf file
    (kind=gguf)."""
    run_dir: str = ""
    """The run folder (kind=run)."""
    checkpoint: str = ""
    """'' = the run's final adapter or model; else a checkpoint folder name such as 'checkpoint-20'."""

    def label(self) -> str:
        if self.kind == "run":
            return f"{Path(self.run_dir).name} ({self.checkpoint or 'final'})"
        return f"{self.kind}: {self.model}"

    def problem(self) -> Optional[str]:
        """Why this source cannot load, in words; None when it looks loadable."""
        _, bad = build_typed(ChatSource, dataclasses.asdict(self))
        if bad:
            return "; ".join(bad)
        bad = unusable_path(self.run_dir if self.kind == "run" else self.model)
        if bad:
            return bad
        if self.kind == "run":
            d = Path(self.run_dir)
            if not (d / "config.yaml").is_file():
                return f"{self.run_dir!r} is not a run folder (no config.yaml)"
            from engine.runs.integrity import weights_problem
            from engine.runs.store import weights_dir
            w = weights_dir(d, self.checkpoint)
            if w is None:
                what = f"checkpoint {self.checkpoint!r}" if self.checkpoint else "a final adapter or model"
                return f"run {d.name} has no {what} yet; finish (or checkpoint) the run first"
            return weights_problem(d, self.checkpoint)  # a truncated file, named, and what to use instead
        if self.kind == "gguf":
            from engine.config.export import LLAMA_CPP_INSTALL, llama_cpp_installed
            if not (self.model.endswith(".gguf") and Path(self.model).is_file()):
                return f"{self.model!r} is not a GGUF file (e.g. saves/<run>/merged/gguf/<run>-q4_k_m.gguf)"
            if not llama_cpp_installed():
                return f"GGUF files are answered by llama.cpp, which is not installed: {LLAMA_CPP_INSTALL}"
            return None
        if self.kind == "merged":
            if not (Path(self.model) / "config.json").is_file():
                return f"{self.model!r} is not a merged model folder (no config.json)"
            from engine.runs.integrity import problems
            damaged = problems(self.model)
            return f"{self.model!r} is damaged: {', '.join(damaged)}; export it again." if damaged else None
        if not self.model.strip():
            return "pick a base model"
        return None


@dataclass(frozen=True)
class GenerationParams:
    system_prompt: str = ""
    """Prepended as a system message; empty = as in training (the run's data.system, else the template's default)."""
    temperature: float = 0.0
    """0 = greedy (the same answer every time); higher = more varied."""
    top_p: float = 1.0
    """Sample only from the smallest set of tokens whose probabilities add up to this."""
    max_new_tokens: int = 256
    """Longest reply, in tokens."""
    repetition_penalty: float = 1.0
    """Above 1 discourages repeating tokens already in the text."""

    def problems(self) -> list[str]:
        _, p = build_typed(GenerationParams, dataclasses.asdict(self))
        if p:
            return p  # a wrong type first: the ranges below compare numbers
        if not 0.0 <= self.temperature <= 5.0:
            p.append(f"temperature: must be between 0 and 5, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            p.append(f"top_p: must be above 0 and at most 1, got {self.top_p}")
        if not 1 <= self.max_new_tokens <= 32768:
            p.append(f"max_new_tokens: must be between 1 and 32768, got {self.max_new_tokens}")
        if not 0.5 <= self.repetition_penalty <= 3.0:
            p.append(f"repetition_penalty: must be between 0.5 and 3, got {self.repetition_penalty}")
        return p


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def source_from_dict(d: dict) -> ChatSource:
    return ChatSource(**{k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(ChatSource)}})


def params_from_dict(d: dict) -> GenerationParams:
    names = {f.name for f in dataclasses.fields(GenerationParams)}
    return GenerationParams(**{k: v for k, v in (d or {}).items() if k in names})
