"""The run config (DESIGN.md contract 1): its sections (model, data, method, train, output,
distributed), loading and saving YAML, --set overrides, and the checks that span several fields.

Light: stdlib + yaml only, so the UI can import it without pulling in torch.

Every field is a dataclass field with a type, a default and one help text (``metadata["help"]``).
Choices are ``Literal`` types. ``from_dict`` collects every problem (unknown keys, wrong types,
values out of range, missing files) and raises one ``ConfigError`` naming each field. The config
round-trips to YAML with a ``schema_version``.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from engine.config import schema
from engine.config.distributed import (SHARDED_STRATEGIES, DistributedConfig, distributed_problems,  # noqa: F401
                                       world_size)
from engine.config.method import MethodConfig, method_problems, quantization  # noqa: F401
from engine.config.report import ReportConfig, RetainConfig  # noqa: F401
from engine.config.rl import rl_problems
from engine.config.schema import F, N, build_section, show, type_name
from engine.runs import trackers
from engine.runs.atomic import write_text

SCHEMA_VERSION = 1

Quantization = Literal["none", "8bit", "4bit"]
DType = Literal["auto", "bf16", "fp16", "fp32"]
Scheduler = Literal["cosine", "linear", "constant", "constant_with_warmup"]
Optimizer = Literal["adamw", "adamw_8bit", "paged_adamw_8bit", "paged_adamw", "adafactor", "sgd"]
OnLongRows = Literal["truncate", "drop", "fail"]
OnBadRows = Literal["fail", "drop"]
DataFormat = Literal["auto", "alpaca", "sharegpt", "messages", "preference", "text"]

Packing = Literal["auto", "on", "off"]

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class _Loader(yaml.SafeLoader):
    """YAML as users write it: `1e-4` is a number (PyYAML's YAML 1.1 rules would read it as text)."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                              re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)[eE][-+]?[0-9]+$"),
                              list("-+0123456789."))


def parse_yaml(text: str) -> Any:
    """A config file's or a --set / --grid value's YAML, with exponent numbers read as numbers."""
    return yaml.load(text, Loader=_Loader)


@dataclass
class ModelConfig:
    name_or_path: str = F("smollm2-135m-instruct",
                          "The model to tune: a name from the model list, a local folder, or a hub id "
                          "(e.g. Qwen/Qwen2.5-0.5B-Instruct; downloads need internet).", label="Model")
    quantization: Quantization = F("none",
                                   "Load the frozen base weights quantised with bitsandbytes: 'none' keeps "
                                   "them at dtype; '8bit' halves their memory; '4bit' (NF4, double-quantised) "
                                   "quarters it. QLoRA sets 4bit itself.", widget="radio",
                                   choice_labels={"none": "none (16/32-bit)", "8bit": "8-bit (½ memory)",
                                                  "4bit": "4-bit NF4 (¼ memory)"})
    dtype: DType = F("auto",
                     "Precision of weights and compute. 'auto' = bf16 on a GPU that supports it, fp16 on older "
                     "GPUs, fp32 weights with bf16 compute on a CPU that multiplies bf16 natively, else fp32.",
                     widget="radio")
    trust_remote_code: bool = F(False,
                                "Run Python code that ships with a hub model. Only tick this for models you trust: "
                                "the code runs with your user's rights.")


@dataclass
class DataConfig:
    datasets: list[str] = F(["identity"],
                            "Datasets to mix: bundled names (see data/), local files (.json/.jsonl/.csv/.parquet) "
                            "or folders, or hub ids.", label="Datasets")
    format: DataFormat = F("auto",
                           "Dataset format. 'auto' detects it from the columns: alpaca (instruction/input/output), "
                           "sharegpt (conversations of from/value), messages (OpenAI role/content), preference "
                           "(prompt/chosen/rejected) or text (continued pre-training).")
    columns: dict[str, str] = F({},
                                "Map the format's column names to your file's, e.g. {instruction: question, "
                                "output: answer}. Empty = the standard names.")
    eval_datasets: list[str] = F([],
                                 "Separate datasets for eval loss (same kinds of names as datasets). When set, "
                                 "val_size must be 0.")
    template: str = F("auto",
                      "Chat template. 'auto' = the tokenizer's own template; otherwise a built-in one "
                      "(alpaca, chatml, llama3, qwen, mistral, gemma, phi) for base models without one.")
    system: str = F("", "System prompt of every conversation that has none of its own. It goes into the chat "
                        "template, so training, the report card, chat and every exported model use it alike. "
                        "Empty = the template's own default (SmolLM2's says it is 'SmolLM, trained by Hugging "
                        "Face', which fights a new identity).", label="System prompt")
    cutoff_len: int = F(1024, "Longest tokenised example, in tokens (prompt + response).", min=8, max=131072)
    on_long_rows: OnLongRows = F("truncate",
                                 "What to do with rows longer than cutoff_len: truncate them, drop them, or fail "
                                 "the run before training.", widget="radio")
    on_bad_rows: OnBadRows = F("fail",
                               "What to do with empty rows and rows missing a needed field: fail before training "
                               "(naming them), or drop them (counted in the data report).", widget="radio")
    val_size: float = F(0.0, "Share of rows held out for eval loss (0 = none; e.g. 0.1 = 10%).", min=0.0, max=0.9,
                        widget="slider", step=0.01)
    max_samples: Optional[int] = F(None, "Use at most this many rows from each dataset (empty = all).", min=1)


@dataclass
class TrainConfig:
    learning_rate: float = F(2e-4, "Peak learning rate.", min_exclusive=0.0, max=1.0)
    epochs: Optional[float] = F(None, "Passes over the training data. Empty = resolved from the data's size: about "
                                      "target_steps optimizer steps (3 epochs when target_steps is empty too).",
                                min_exclusive=0.0)
    max_steps: Optional[int] = F(None, "Stop after this many optimizer steps (overrides epochs when set).", min=1)
    target_steps: Optional[int] = F(None, "Aim for about this many optimizer steps whatever the data's size: whole "
                                          "epochs are resolved from the row count (at least min_epochs). Only while "
                                          "epochs and max_steps are empty: a value in either wins.", min=1)
    min_epochs: float = F(1.0, "With target_steps: at least this many passes over the data, however many rows.",
                          min_exclusive=0.0)
    batch_size: int = F(4, "Examples per device per forward pass.", min=1, max=4096)
    grad_accum: int = F(1, "Forward passes per optimizer step (effective batch = batch_size x grad_accum).",
                        min=1, max=4096)
    scheduler: Scheduler = F("cosine", "Learning-rate schedule after warm-up.", widget="radio")
    optimizer: Optimizer = F("adamw",
                             "adamw: AdamW with fp32 states (8 bytes per trainable weight); adamw_8bit: AdamW with "
                             "8-bit states (bitsandbytes, 2 bytes per weight); paged_adamw_8bit / paged_adamw: the "
                             "same with states paged to CPU memory on spikes (QLoRA's third part; CUDA only, on "
                             "CPU they run unpaged); adafactor: factored states, least memory; sgd: no states.")
    warmup_ratio: float = F(0.0, "Share of steps spent warming the learning rate up from 0.", min=0.0, max=0.5,
                            widget="slider", step=0.01)
    warmup_steps: int = F(0, "Warm-up as a number of optimizer steps; when above 0 it is used instead of "
                             "warmup_ratio.", min=0)
    max_grad_norm: float = F(1.0, "Clip the gradient norm to this (0 = no clipping).", min=0.0)
    weight_decay: float = F(0.0, "AdamW weight decay.", min=0.0)
    neftune_alpha: float = F(0.0, "NEFTune: uniform noise of this scale (alpha / sqrt(length x width)) added to the "
                                  "input embeddings while training (the Trainer's neftune_noise_alpha); 5 is the "
                                  "paper's value. 0 = off.", min=0.0, max=50.0, label="NEFTune noise alpha")
    seed: int = F(42, "Random seed for data order and initialisation.", min=0)
    logging_steps: int = F(1, "Write a train event every N optimizer steps.", min=1)
    save_steps: int = F(50, "Save a resumable checkpoint every N optimizer steps.", min=1)
    eval_steps: int = F(50, "Compute eval loss every N steps (when there is a validation split).", min=1)
    save_total_limit: int = F(2, "Keep at most this many checkpoints (oldest deleted first).", min=1)
    gradient_checkpointing: bool = F(False, "Recompute activations in the backward pass: less memory, ~30% slower.")
    packing: Packing = F("auto",
                         "Padding-free packing: a batch's examples joined into one row, positions restarting per "
                         "example, no attention across them; same loss as padded batches. 'auto' packs only where a "
                         "variable-length attention kernel (flash-attention on CUDA) makes it pay: with plain SDPA "
                         "one long masked row costs more attention than the padding it saves.")
    trained_logits_only: bool = F(True,
                                  "Project onto the vocabulary only at positions whose next token is trained: prompt "
                                  "and padding logits are never materialised. Same loss, less memory and time.")
    liger_kernels: bool = F(True,
                            "On a CUDA GPU with the liger-kernel package installed: Liger's fused Triton kernels "
                            "(RMSNorm, RoPE, SwiGLU, and the output head fused into the loss, so the logits never "
                            "exist whole). Same loss within bf16 rounding; no effect elsewhere.")
    report_to: list[trackers.TrackerName] = F(
        [], "Experiment trackers to log to, through the Trainer's own integrations, each writing inside the run "
            "folder: tensorboard (saves/<run>/tensorboard), mlflow (a file store in saves/<run>/mlflow), wandb "
            "(offline in saves/<run>/wandb unless you are logged in), trackio (saves/<run>/trackio). Each needs "
            "its package installed.", label="Experiment trackers", widget="checkboxes")


@dataclass
class OutputConfig:
    run_name: str = F("", "Run folder name under saves_dir (letters, digits, . _ -). Empty = generated.",
                      label="Run name")
    saves_dir: str = F("saves", "Folder that holds one sub-folder per run.")


@dataclass
class RunConfig:
    model: ModelConfig = N(ModelConfig, "Which model, and how it is loaded.")
    data: DataConfig = N(DataConfig, "Which data, and how it is tokenised.")
    method: MethodConfig = N(MethodConfig, "Stage and fine-tuning method.")
    train: TrainConfig = N(TrainConfig, "Optimisation hyperparameters.")
    output: OutputConfig = N(OutputConfig, "Where the run is saved.")
    distributed: DistributedConfig = N(DistributedConfig, "Several GPUs or machines (torchrun / DeepSpeed).")
    retain: RetainConfig = N(RetainConfig, "Keep what the model already knew while it learns your data.")
    report: ReportConfig = N(ReportConfig, "The report card at the end of an SFT run: held-out questions answered.")


class ConfigError(ValueError):
    """Every problem found in a config, each naming its field."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("Invalid config:\n" + "\n".join(f"  - {p}" for p in self.problems))


def iter_fields(cls: type = None, prefix: str = ""):
    """Yield (dotted_key, type, default, metadata) for every leaf field, in declaration order."""
    return schema.iter_fields(cls or RunConfig, prefix)


def field_info(key: str) -> tuple[Any, Any, dict]:
    """(type, default, metadata) of one dotted key."""
    for k, tp, default, meta in iter_fields():
        if k == key:
            return tp, default, meta
    raise KeyError(key)


def migrate(data: dict) -> dict:
    """Bring an older schema up to SCHEMA_VERSION (tolerant loading, peft style)."""
    data = dict(data)
    data.pop("schema_version", None)
    train = data.get("train")
    if isinstance(train, dict) and isinstance(train.get("packing"), bool):  # it was a plain on/off switch
        data["train"] = {**train, "packing": "on" if train["packing"] else "off"}
    return data


def from_dict(data: Any, check_files: bool = True, root: Path | None = None) -> RunConfig:
    """Build and validate a RunConfig; raise one ConfigError listing every problem."""
    problems: list[str] = []
    if not isinstance(data, dict):
        raise ConfigError([f"config: expected a mapping of sections, got {type(data).__name__}"])
    version = data.get("schema_version", SCHEMA_VERSION)
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        problems.append(f"schema_version: {show(version)} is newer than this Whetstone understands "
                        f"({SCHEMA_VERSION}); upgrade Whetstone")
    cfg = build_section(RunConfig, migrate(data), "", problems)
    problems += semantic_problems(cfg, check_files=check_files, root=root)
    if problems:
        raise ConfigError(problems)
    return cfg


def semantic_problems(cfg: RunConfig, check_files: bool = True, root: Path | None = None) -> list[str]:
    """Problems that involve more than one field, or the file system."""
    p: list[str] = []
    if cfg.output.run_name and not RUN_NAME_RE.match(cfg.output.run_name):
        p.append(f"output.run_name: {show(cfg.output.run_name)} may only hold letters, digits, '.', '_' and '-' "
                 "(no slashes or '..'), starting with a letter or digit")
    if cfg.output.run_name in (".", ".."):
        p.append("output.run_name: may not be '.' or '..'")
    if not cfg.output.saves_dir.strip():
        p.append("output.saves_dir: must not be empty")
    if not cfg.model.name_or_path.strip():
        p.append("model.name_or_path: must not be empty; pick a model from the list")
    if not cfg.data.datasets:
        p.append("data.datasets: name at least one dataset")
    from engine.data.formats import COLUMNS
    known = sorted({c for cols in COLUMNS.values() for c in cols})
    for k, v in cfg.data.columns.items():
        if k not in known:
            p.append(f"data.columns: {k!r} is not a column name any format uses; map one of {', '.join(known)} "
                     "to your file's column (e.g. instruction: question)")
        elif not str(v).strip():
            p.append(f"data.columns: {k!r} maps to an empty column name; write {k}=<your column>")
    if cfg.data.eval_datasets and cfg.data.val_size > 0:
        p.append("data.val_size: set it to 0 when data.eval_datasets names separate eval data (or clear "
                 "eval_datasets to hold out a share of the training rows)")
    p += method_problems(cfg)
    p += rl_problems(cfg, check_files, world_size(cfg))
    p += distributed_problems(cfg)
    if check_files:
        p += trackers.problems(cfg.train.report_to)  # this machine's packages, like the files below
        from engine.data import names  # resolves bundled names and checks local paths
        for key in ("datasets", "eval_datasets"):
            for i, d in enumerate(getattr(cfg.data, key)):
                err = names.problem(d, root=root)
                if err:
                    p.append(f"data.{key}[{i}]: {err}")
        from engine.config import report
        p += report.problems(cfg, root=root)
        from engine.preflight import model_list
        err = model_list.problem(cfg.model.name_or_path)
        if err:
            p.append(f"model.name_or_path: {err}")
    return p


def to_dict(cfg: RunConfig) -> dict:
    return {"schema_version": SCHEMA_VERSION, **dataclasses.asdict(cfg)}


def to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, allow_unicode=True)


def from_yaml(text: str, check_files: bool = True) -> RunConfig:
    try:
        data = parse_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise ConfigError([f"config: not valid YAML: {str(e)[:300] or 'nested too deeply'}"]) from None
    return from_dict(data if data is not None else {}, check_files=check_files)


def load(path: str | Path, overrides: list[str] = (), check_files: bool = True) -> RunConfig:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config: no file at {path}"]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"config: cannot read {path}: {e}"]) from None
    try:
        data = parse_yaml(text)
    except (yaml.YAMLError, RecursionError, ValueError) as e:
        raise ConfigError([f"config: {path} is not valid YAML: {str(e)[:300] or 'nested too deeply'}"]) from None
    data = data if data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError([f"config: {path} must hold a mapping of sections"])
    data = apply_overrides(data, overrides)
    return from_dict(data, check_files=check_files)


def save(cfg: RunConfig, path: str | Path) -> None:
    """Write atomically (temp file + rename) so a reader never sees half a config."""
    write_text(Path(path), to_yaml(cfg))


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``dotted.key=value`` strings (values parsed as YAML) to a plain dict."""
    problems = []
    data = _deepcopy(data)
    for o in overrides:
        if "=" not in o:
            problems.append(f"--set {o!r}: expected dotted.key=value")
            continue
        key, raw = o.split("=", 1)
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = value
    if problems:
        raise ConfigError(problems)
    return data


def replace(cfg: RunConfig, key: str, value: Any) -> RunConfig:
    """A new config with one dotted key changed (the UI's handlers use this; nothing is mutated)."""
    section, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(cfg, **{section: value})
    return dataclasses.replace(cfg, **{section: _replace_in(getattr(cfg, section), rest, value)})


def _replace_in(obj: Any, key: str, value: Any) -> Any:
    head, _, rest = key.partition(".")
    if not rest:
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _replace_in(getattr(obj, head), rest, value)})


def get(cfg: RunConfig, key: str) -> Any:
    obj: Any = cfg
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def _deepcopy(d: Any) -> Any:
    if isinstance(d, dict):
        return {k: _deepcopy(v) for k, v in d.items()}
    if isinstance(d, list):
        return [_deepcopy(v) for v in d]
    return d


def describe_fields() -> str:
    """Every field with type, default and help: what `python app.py train --help` prints."""
    lines = []
    section = None
    for key, tp, default, meta in iter_fields():
        head = key.split(".")[0]
        if head != section:
            section = head
            lines.append(f"\n[{head}]")
        d = "empty" if default in (None, "") else default
        lines.append(f"  {key}  ({type_name(tp)}, default: {d})")
        lines.append(f"      {meta.get('help', '')}")
    return "\n".join(lines)
