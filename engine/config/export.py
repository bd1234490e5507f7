"""The export job's typed settings: which run, what to write, where. Light (stdlib + yaml).

The UI and `python app.py export` both write one of these to YAML and start
`python -m engine.export --config <file>`; nothing else is passed to the worker.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from engine.config.method import MERGES_AWAY, PROMPT_LEARNING
from engine.config.schema import build_typed
from engine.runs.atomic import write_text
from engine.runs.paths import unusable_path

ExportKind = Literal["merged", "adapter"]
ExportDType = Literal["fp16", "bf16", "fp32"]
GGUFType = Literal["f16", "q8_0", "q4_k_m", "q5_k_m", "q6_k"]
# Made by llama.cpp's own quantizer (llama-cpp-python) from the f16 file; f16 and q8_0 need nothing compiled.
LLAMA_CPP_TYPES = ("q4_k_m", "q5_k_m", "q6_k")
LLAMA_CPP_INSTALL = ('pip install llama-cpp-python (it builds llama.cpp, several minutes; on processors with AMX '
                     'see the README for the build flags)')


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python can be imported here (asked without importing it)."""
    import importlib.util
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):
        return False

SHARD_RE = re.compile(r"^\s*(\d+(\.\d+)?)\s*(KB|MB|GB|KiB|MiB|GiB)\s*$", re.I)
EVENTS_SUFFIX = ".events.jsonl"


@dataclass
class ExportConfig:
    run_dir: str = ""
    """The training run to export (a folder in saves/)."""
    checkpoint: str = ""
    """'' = the run's final adapter or model; else a checkpoint name such as 'checkpoint-20'."""
    kind: ExportKind = "merged"
    """merged: adapter merged into the base, a standalone model folder; adapter: the LoRA adapter only."""
    out_dir: str = ""
    """Where to write; '' = <run>/merged (or <run>/adapter-export). Written to a temp folder, renamed at the end."""
    dtype: ExportDType = "fp16"
    """Weight precision of a merged export: fp16 (widest support: llama.cpp, Ollama, older GPUs), bf16, fp32."""
    max_shard_size: str = "2GB"
    """Largest safetensors file; bigger models are split into numbered shards with an index."""
    gguf: list[GGUFType] = field(default_factory=list)
    """Also write GGUF files (llama-architecture models): f16, q8_0, and the 4-6-bit K-quants q4_k_m (Ollama's usual
    default), q5_k_m, q6_k made by llama.cpp's quantizer (needs llama-cpp-python). Each is loaded in llama.cpp and
    asked a question before the export is called done, when llama-cpp-python is installed."""
    verify_prompts: int = 3
    """Prompts on which the merged logits are compared with base + adapter before success."""
    overwrite: bool = False
    """Replace an existing export at out_dir (the old one stays until the new one is complete)."""

    def output_path(self) -> Path:
        if self.out_dir:
            return Path(self.out_dir).expanduser().resolve()
        return Path(self.run_dir).resolve() / ("merged" if self.kind == "merged" else "adapter-export")

    def events_path(self) -> Path:
        out = self.output_path()
        return out.parent / f".{out.name}{EVENTS_SUFFIX}"

    def problems(self) -> list[str]:
        _, p = build_typed(ExportConfig, dataclasses.asdict(self))  # wrong types and choices, each named
        if p:
            return p
        bad = {k: unusable_path(getattr(self, k)) for k in ("run_dir", "out_dir")}
        p += [f"{k}: {why}" for k, why in bad.items() if why]
        if not self.run_dir:
            p.append("run_dir: pick a run to export")
        elif not bad["run_dir"] and not (Path(self.run_dir) / "config.yaml").is_file():
            p.append(f"run_dir: {self.run_dir!r} is not a run folder (no config.yaml)")
        elif not bad["run_dir"]:
            from engine.runs.integrity import weights_problem
            damaged = weights_problem(self.run_dir, self.checkpoint)
            if damaged:
                p.append(f"{'checkpoint' if self.checkpoint else 'run_dir'}: {damaged}")
        if not SHARD_RE.match(self.max_shard_size):
            p.append(f"max_shard_size: {self.max_shard_size!r} should look like 500MB or 2GB")
        if self.kind == "merged" and self.run_dir and not bad["run_dir"] and (why := merge_refusal(self.run_dir)):
            p.append(f"kind: {why}")
        if self.gguf and self.kind != "merged":
            p.append("gguf: GGUF files are written from a merged model; set kind to merged")
        wanted = [q for q in self.gguf if q in LLAMA_CPP_TYPES]
        if wanted and not llama_cpp_installed():
            p.append(f"gguf: {', '.join(wanted)} are made by llama.cpp's quantizer, which is not installed: "
                     f"{LLAMA_CPP_INSTALL}; or pick f16 / q8_0")
        if not 1 <= self.verify_prompts <= 20:
            p.append(f"verify_prompts: {self.verify_prompts!r} must be a whole number from 1 to 20")
        if self.run_dir and not any(bad.values()) and not self.overwrite and self.output_path().exists():
            p.append(f"out_dir: {self.output_path()} already exists; tick overwrite or choose another folder")
        return p


def merge_refusal(run_dir: str | Path) -> str | None:
    """Why this run's method cannot be merged into the base weights, or None."""
    try:
        ft = ((yaml.safe_load((Path(run_dir) / "config.yaml").read_text(encoding="utf-8")) or {})
              .get("method") or {}).get("finetuning", "lora")
    except (OSError, UnicodeDecodeError, yaml.YAMLError, AttributeError):
        return None  # an unreadable run is named by the other checks
    if ft in MERGES_AWAY or not isinstance(ft, str):
        return None
    what = ("its trained virtual tokens are extra inputs in front of every sequence (or of every prompted "
            "layer's attention), not changes to the weights" if ft in PROMPT_LEARNING else
            "its adapters are extra layers, not changes to the existing weights")
    return (f"a {ft} run cannot be merged into the base: {what}, so there is nothing to fold in. Export the "
            "adapter instead (kind adapter); Chat and evaluation load it on the base model")


class ExportConfigError(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("Invalid export:\n" + "\n".join(f"  - {p}" for p in problems))


def from_dict(d: dict, check: bool = True) -> ExportConfig:
    cfg, problems = build_typed(ExportConfig, d)  # unknown keys and wrong types, each named
    if check and not problems:
        problems = cfg.problems()
    if problems:
        raise ExportConfigError(problems)
    return cfg


def save(cfg: ExportConfig, path: str | Path) -> Path:
    return write_text(Path(path), yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))


def load(path: str | Path, check: bool = True) -> ExportConfig:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ExportConfigError([f"config: cannot read {path}: {e}"]) from None
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise ExportConfigError([f"config: {path} is not valid YAML: {str(e)[:300]}"]) from None
    return from_dict(data or {}, check=check)
