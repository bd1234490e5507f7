"""LLaMA-Factory training configs (`llamafactory-cli train X.yaml`) converted to Whetstone run configs.

`python app.py train THEIR.yaml` recognises one (flat keys such as model_name_or_path / stage /
finetuning_type, no Whetstone sections), prints the converted config and every key it did not map, and
trains; `python app.py convert THEIR.yaml -o mine.yaml` writes the conversion. A key that would change
what is trained and has no Whetstone equivalent is an error (nothing is trained); one that does not
(worker counts, caching, plotting) is a warning. Where a key is absent, LLaMA-Factory's own default is
written, so the run trains as theirs would. Light: stdlib + yaml.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from engine.config.run import SCHEMA_VERSION

WHETSTONE_SECTIONS = {"schema_version", "model", "data", "method", "train", "output", "distributed"}
LF_MARKERS = {"model_name_or_path", "stage", "finetuning_type", "dataset", "template", "output_dir"}

# Their key -> ours, copied as they are.
DIRECT = {
    "model_name_or_path": "model.name_or_path", "trust_remote_code": "model.trust_remote_code",
    "cutoff_len": "data.cutoff_len", "max_samples": "data.max_samples",
    "per_device_train_batch_size": "train.batch_size", "gradient_accumulation_steps": "train.grad_accum",
    "learning_rate": "train.learning_rate", "num_train_epochs": "train.epochs", "warmup_ratio": "train.warmup_ratio",
    "warmup_steps": "train.warmup_steps", "logging_steps": "train.logging_steps", "save_steps": "train.save_steps",
    "eval_steps": "train.eval_steps", "save_total_limit": "train.save_total_limit",
    "weight_decay": "train.weight_decay", "max_grad_norm": "train.max_grad_norm", "seed": "train.seed",
    "neftune_noise_alpha": "train.neftune_alpha", "default_system": "data.system",
    "lora_rank": "method.lora.rank", "lora_dropout": "method.lora.dropout", "use_rslora": "method.lora.use_rslora",
    "use_dora": "method.lora.use_dora", "pref_beta": "method.pref.beta", "simpo_gamma": "method.pref.simpo_gamma",
    "kto_chosen_weight": "method.pref.kto_desirable_weight",
    "kto_rejected_weight": "method.pref.kto_undesirable_weight",
    "double_quantization": "method.quant.double_quant", "quantization_type": "method.quant.type",
}
# LLaMA-Factory's (and the HF Trainer's) defaults where they differ from Whetstone's: written when absent.
LF_DEFAULTS = {"cutoff_len": 2048, "learning_rate": 5e-5, "per_device_train_batch_size": 8,
               "lr_scheduler_type": "linear", "logging_steps": 500, "save_steps": 500}
LORA_RANK = 8  # their lora_rank default (lora_alpha: twice the rank)
# Keys that do not change what is trained: left out with a warning saying why.
COSMETIC = {
    "do_train": "always true here", "overwrite_cache": "Whetstone re-reads the data each run",
    "preprocessing_num_workers": "tokenising runs in one process", "dataloader_num_workers": "data loads in the worker",
    "plot_loss": "the Train tab and events.jsonl chart every run", "ddp_timeout": "torchrun's default timeout is used",
    "overwrite_output_dir": "Whetstone never overwrites a run: pick a new output.run_name",
    "save_only_model": "checkpoints always keep the optimizer state, so Resume continues exactly",
    "per_device_eval_batch_size": "eval uses train.batch_size", "eval_strategy": "eval runs every train.eval_steps "
    "when there is eval data", "save_strategy": "checkpoints every train.save_steps",
    "flash_attn": "the attention kernel is picked automatically", "enable_liger_kernel": "speed only",
    "use_unsloth": "speed only", "include_num_input_tokens_seen": "tokens are always counted",
    "run_name": "the run's name is its folder's (output.run_name)", "logging_dir": "see train.report_to",
    "print_param_status": "the worker prints the trainable parameters", "tokenized_path": "no tokenised cache",
    "bf16_full_eval": "eval uses the training precision", "tf32": "speed only",
    "ddp_find_unused_parameters": "set by the strategy", "push_to_hub": "use python app.py export",
    "hub_model_id": "use python app.py export", "disable_tqdm": "progress is shown by the CLI",
}
STAGES = {"sft": "sft", "pt": "pt", "rm": "rm", "kto": "kto"}
PREF_LOSS = {"sigmoid": ("dpo", "sigmoid"), "ipo": ("dpo", "ipo"), "hinge": ("dpo", "hinge"), "orpo": ("orpo", None),
             "simpo": ("simpo", None)}
SCHEDULERS = ("cosine", "linear", "constant", "constant_with_warmup")
OPTIMIZERS = {"adamw_torch": "adamw", "adamw_torch_fused": "adamw", "adamw_hf": "adamw", "adamw": "adamw",
              "adamw_bnb_8bit": "adamw_8bit", "adamw_8bit": "adamw_8bit", "paged_adamw_8bit": "paged_adamw_8bit",
              "paged_adamw_32bit": "paged_adamw", "adafactor": "adafactor", "sgd": "sgd"}
TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
# Their demo datasets (in their data/ folder) and the bundled Whetstone set of the same kind.
DEMO_DATASETS = {"identity": "identity", "alpaca_en_demo": "alpaca_demo", "alpaca_zh_demo": "alpaca_demo",
                 "dpo_en_demo": "preference_demo", "dpo_zh_demo": "preference_demo", "kto_en_demo": "preference_demo",
                 "c4_demo": "pretrain_demo"}


@dataclass
class Conversion:
    source: str
    config: dict = field(default_factory=dict)     # the Whetstone run config (only what was set)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # how something was mapped, said once

    def set(self, key: str, value: Any) -> None:
        node = self.config
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value

    def get(self, key: str, default: Any = None) -> Any:
        node: Any = self.config
        for p in key.split("."):
            if not isinstance(node, dict) or p not in node:
                return default
            node = node[p]
        return node


def looks_like_llamafactory(data: Any) -> bool:
    """A LLaMA-Factory config: flat keys of theirs, none of Whetstone's sections."""
    return isinstance(data, dict) and not (set(data) & WHETSTONE_SECTIONS) and bool(set(data) & LF_MARKERS)


def _names(value: Any) -> list[str]:
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    return [v.strip() for v in str(value or "").split(",") if v.strip()]


def _data_dir(value: str, base: Optional[Path]) -> Path:
    """Their dataset_dir, found as they find it (the current folder) or beside the YAML and above it."""
    p = Path(value).expanduser()
    if p.is_absolute():
        return p
    tries = [Path.cwd() / p] + ([base / p, base.parent / p, base.parent.parent / p] if base else [])
    return next((t for t in tries if (t / "dataset_info.json").is_file()), Path(value))


def _datasets(c: Conversion, key: str, names: list[str], folder: Path) -> list[str]:
    import json
    info_file = folder / "dataset_info.json"
    try:
        info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else None
    except (OSError, ValueError):
        info = None
    out = []
    for n in names:
        if isinstance(info, dict) and n in info:
            out.append(f"{folder}:{n}")
        elif n in DEMO_DATASETS:
            out.append(DEMO_DATASETS[n])
            c.warnings.append(f"{key}: {n!r} is LLaMA-Factory's demo set and {info_file} "
                              f"{'has no such entry' if info is not None else 'was not found'}; using Whetstone's "
                              f"bundled {DEMO_DATASETS[n]!r} of the same kind (different rows); point dataset_dir at "
                              "their data folder to train on theirs")
        else:
            c.errors.append(f"{key}: no dataset {n!r} in {info_file}"
                            f"{'' if info is not None else ' (the file was not found)'}; set dataset_dir to the "
                            "folder that holds their dataset_info.json")
    return out


def _template(c: Conversion, name: str) -> None:
    from engine.data import lf_templates
    from engine.preflight.model_list import local_dir
    model = c.get("model.name_or_path", "")
    folder = local_dir(model, "tokenizer.json") if model else None
    choice = lf_templates.choose(name, folder)
    seen = "" if folder else " (the model is not on this machine, so its own template was not compared)"
    if choice is None or not choice.name:
        why = choice.note if choice else f"template {name!r} is not one Whetstone knows"
        if folder is None or choice is None:
            c.set("data.template", "auto")
            c.warnings.append(f"template: {why}; using the model's own chat template ('auto'): check that it is "
                              f"the format you trained with in LLaMA-Factory{seen}")
        else:
            c.errors.append(f"template: {why}; set data.template to auto (the model's own) or one of "
                            "alpaca, chatml, llama3, qwen, mistral, gemma, phi")
        return
    c.set("data.template", choice.name)
    if choice.system and not c.get("data.system", ""):  # their default_system, when given, wins
        c.set("data.system", choice.system)
    (c.notes if choice.same else c.warnings).append(choice.note + ("" if choice.same else seen))


def _method(c: Conversion, d: dict) -> None:
    stage = str(d.get("stage", "sft"))
    if stage == "dpo":
        loss = str(d.get("pref_loss", "sigmoid"))
        if loss not in PREF_LOSS:
            c.errors.append(f"pref_loss: {loss!r} has no Whetstone equivalent (sigmoid, ipo, hinge, orpo, simpo)")
        else:
            stage, dpo_loss = PREF_LOSS[loss]
            if dpo_loss:
                c.set("method.pref.dpo_loss", dpo_loss)
    elif stage in STAGES:
        stage = STAGES[stage]
    else:
        c.errors.append(f"stage: {stage!r} is not available (Whetstone trains sft, pt, dpo, orpo, simpo, kto, rm)")
    c.set("method.stage", stage)
    ft = str(d.get("finetuning_type", "lora"))
    bits = d.get("quantization_bit")
    if ft not in ("lora", "full", "freeze"):
        c.errors.append(f"finetuning_type: {ft!r} has no Whetstone equivalent (lora, full, freeze)")
    if bits not in (None, 4, 8):
        c.errors.append(f"quantization_bit: {bits!r}: Whetstone quantises to 4 or 8 bits with bitsandbytes")
    if bits and str(d.get("quantization_method", "bnb")) not in ("bnb", "bitsandbytes"):
        c.errors.append(f"quantization_method: {d['quantization_method']!r}: only bitsandbytes is available")
    c.set("method.finetuning", "qlora" if ft == "lora" and bits == 4 else ft)
    if bits == 8:
        c.set("model.quantization", "8bit")
    elif bits == 4 and ft != "lora":
        c.set("model.quantization", "4bit")  # refused by the config check: only adapters train on 4-bit weights
    if ft == "lora":
        rank = d.get("lora_rank", LORA_RANK)
        c.set("method.lora.rank", rank)
        c.set("method.lora.alpha", d.get("lora_alpha") or 2 * rank)
        targets = _names(d.get("lora_target", "all"))
        c.set("method.lora.targets", "all" if targets in ([], ["all"]) else targets)
        if d.get("pissa_init"):
            c.set("method.lora.init", "pissa")
        if d.get("loraplus_lr_ratio"):
            c.set("method.lora.loraplus_lr_ratio", float(d["loraplus_lr_ratio"]))
    if ft == "freeze":
        layers = int(d.get("freeze_trainable_layers", 2))
        if layers < 0:
            c.errors.append(f"freeze_trainable_layers: {layers} (the first layers) is not available; Whetstone "
                            "trains the last N layers: use a positive number")
        c.set("method.freeze.trainable_layers", abs(layers))
        mods = _names(d.get("freeze_trainable_modules", "all"))
        c.set("method.freeze.trainable_modules", [] if mods in ([], ["all"]) else mods)
        if d.get("freeze_extra_modules"):
            c.set("method.freeze.extra_modules", _names(d["freeze_extra_modules"]))


HANDLED = {"stage", "pref_loss", "finetuning_type", "quantization_bit", "quantization_method", "lora_rank",
           "lora_alpha", "lora_target", "pissa_init", "loraplus_lr_ratio", "freeze_trainable_layers",
           "freeze_trainable_modules", "freeze_extra_modules", "dataset", "eval_dataset", "dataset_dir",
           "template", "output_dir", "bf16", "fp16", "pure_bf16", "report_to", "lr_scheduler_type", "optim",
           "val_size", "max_steps", "packing", "neat_packing", "disable_gradient_checkpointing", "deepspeed",
           "train_on_prompt", "mask_history", "resume_from_checkpoint", "pref_ftx", "quantization_device_map"}


def convert(data: dict, source: str = "", base: Optional[Path] = None) -> Conversion:
    """A LLaMA-Factory training config as a Whetstone run config, with every key not mapped named."""
    c = Conversion(source, {"schema_version": SCHEMA_VERSION})
    d = {**{k: v for k, v in LF_DEFAULTS.items() if k not in data}, **data}
    if any(k.startswith("export_") for k in d) and "stage" not in d:
        c.errors.append("this is a LLaMA-Factory export config; export with python app.py export saves/<run>")
    for k in sorted(set(LF_DEFAULTS) - set(data)):
        c.notes.append(f"{k}: not set, so LLaMA-Factory's default {LF_DEFAULTS[k]!r} is used")
    adapter_keys = ("lora_", "use_rslora", "use_dora", "pissa_", "loraplus_")
    for key, value in d.items():
        if key.startswith(adapter_keys) and d.get("finetuning_type", "lora") != "lora":
            c.warnings.append(f"{key}: left out (finetuning_type is {d.get('finetuning_type')}, which trains no LoRA)")
        elif key in DIRECT:
            if value is not None:
                c.set(DIRECT[key], value)
        elif key in COSMETIC:
            if key != "do_train" and value not in (None, False, "no"):
                c.warnings.append(f"{key}: left out ({COSMETIC[key]})")
        elif key not in HANDLED:
            c.errors.append(f"{key}: not a key the converter knows, so it may change what is trained; remove it, "
                            "or set its Whetstone equivalent by hand (python app.py train --help lists every field)")
    _method(c, d)
    folder = _data_dir(str(d.get("dataset_dir") or "data"), base)
    c.set("data.datasets", _datasets(c, "dataset", _names(d.get("dataset")), folder))
    if d.get("eval_dataset"):
        c.set("data.eval_datasets", _datasets(c, "eval_dataset", _names(d["eval_dataset"]), folder))
    if d.get("template"):
        _template(c, str(d["template"]))
    elif c.get("method.stage") != "pt":
        c.set("data.template", "auto")
        c.notes.append("template: not set, so the tokenizer's own chat template is used, as LLaMA-Factory does")
    val = d.get("val_size") or 0
    if val >= 1:
        c.errors.append(f"val_size: {val} rows; Whetstone holds out a share (0 to 0.9): write e.g. 0.1")
    elif val:
        c.set("data.val_size", float(val))
    if d.get("max_steps") and d["max_steps"] > 0:
        c.set("train.max_steps", int(d["max_steps"]))
    sched = str(d.get("lr_scheduler_type"))
    if sched in SCHEDULERS:
        c.set("train.scheduler", sched)
    else:
        c.errors.append(f"lr_scheduler_type: {sched!r} has no Whetstone equivalent ({', '.join(SCHEDULERS)})")
    if d.get("optim"):
        if d["optim"] in OPTIMIZERS:
            c.set("train.optimizer", OPTIMIZERS[d["optim"]])
        else:
            c.errors.append(f"optim: {d['optim']!r} has no Whetstone equivalent ({', '.join(OPTIMIZERS)})")
    if d.get("bf16") or d.get("pure_bf16"):
        c.set("model.dtype", "bf16")
    elif d.get("fp16"):
        c.set("model.dtype", "fp16")
    if d.get("packing") or d.get("neat_packing"):
        c.set("train.packing", "on")  # Whetstone's packing never attends across examples, like neat_packing
    elif d.get("packing") is False:
        c.set("train.packing", "off")
    c.set("train.gradient_checkpointing", not d.get("disable_gradient_checkpointing", False))
    for key, what in (("train_on_prompt", "Whetstone trains on the replies only"),
                      ("mask_history", "Whetstone trains every assistant turn"),
                      ("resume_from_checkpoint", "resume a Whetstone run with python app.py train --resume"),
                      ("pref_ftx", "no SFT term is added to the preference loss here")):
        if d.get(key):
            c.errors.append(f"{key}: {d[key]!r} is not available: {what}")
    trackers = [t for t in _names(d.get("report_to")) if t != "none"]
    if [t for t in trackers if t not in TRACKERS]:
        c.warnings.append(f"report_to: {', '.join(t for t in trackers if t not in TRACKERS)} left out (Whetstone "
                          f"logs to {', '.join(TRACKERS)})")
    if [t for t in trackers if t in TRACKERS]:
        c.set("train.report_to", [t for t in trackers if t in TRACKERS])
    if d.get("deepspeed"):
        ds = os.path.basename(str(d["deepspeed"]))
        strategy = "deepspeed_zero3" if "z3" in ds else "deepspeed_zero2" if "z2" in ds else "ddp"
        c.set("distributed.strategy", strategy)
        if "offload" in ds:
            c.set("distributed.cpu_offload", True)
        c.warnings.append(f"deepspeed: {d['deepspeed']} -> distributed.strategy {strategy} (Whetstone writes its own "
                          "DeepSpeed config); set distributed.nproc_per_node to your GPU count")
    out = Path(str(d.get("output_dir") or "")).expanduser()
    if out.name:
        c.set("output.run_name", out.name)
        c.set("output.saves_dir", str(out.parent) if str(out.parent) not in ("", ".") else "saves")
    return c


def read(path: str | Path) -> Optional[Conversion]:
    """The conversion of a LLaMA-Factory config file; None when the file is not one (a Whetstone config)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError, ValueError):
        return None  # the Whetstone loader says what is wrong with the file
    if not looks_like_llamafactory(data):
        return None
    return convert(data, str(path), path.resolve().parent)


def ordered(config: dict) -> dict:
    """The sections in the order of a Whetstone config file."""
    order = ["schema_version", "model", "data", "method", "train", "output", "distributed"]
    return {k: config[k] for k in order if k in config}


def to_yaml(c: Conversion) -> str:
    """The converted config, headed by comments that say where it came from and what was left out."""
    head = [f"# Converted from the LLaMA-Factory config {c.source} by `python app.py convert`."]
    head += [f"# ERROR: {e}" for e in c.errors] + [f"# warning: {w}" for w in c.warnings]
    head += [f"# note: {n}" for n in c.notes]
    return "\n".join(head) + "\n" + yaml.safe_dump(ordered(c.config), sort_keys=False, allow_unicode=True)


def report(c: Conversion) -> str:
    """What the CLI prints: the converted YAML, then every key not mapped (errors first)."""
    shown = yaml.safe_dump(ordered(c.config), sort_keys=False, allow_unicode=True).rstrip()
    lines = [f"LLaMA-Factory config {c.source}, converted:", "", shown, ""]
    lines += [f"error: {e}" for e in c.errors] + [f"warning: {w}" for w in c.warnings] + [f"note: {n}" for n in c.notes]
    return "\n".join(lines)
