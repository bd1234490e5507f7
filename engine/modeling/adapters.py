"""Fine-tuning methods: which weights train. The peft methods (LoRA with rsLoRA / DoRA / PiSSA,
QLoRA, AdaLoRA, IA3, prefix, prompt and P-tuning) through peft; bottleneck adapters through
engine.modeling.bottleneck; freeze and full by hand (they only flip requires_grad). Heavy."""
from __future__ import annotations

from pathlib import Path

from torch import nn

from engine.config import RunConfig
from engine.modeling.bottleneck import BottleneckModel
from engine.modeling.layers import MethodError, decoder_layers, linear_module_names
from engine.preflight.shape import FFN_OUT_NAMES

PISSA_INIT_DIR = "pissa_init"  # no dot: peft uses the folder name as an adapter (module) name


def _task_type(cfg: RunConfig) -> str:
    return "SEQ_CLS" if cfg.method.stage == "rm" else "CAUSAL_LM"


def _targets(model: nn.Module, targets, key: str) -> list[str]:
    known = set(linear_module_names(model))
    if targets == "all":
        return sorted(known)
    missing = [t for t in targets if t not in known]
    if missing:
        raise MethodError(f"{key}: {missing} are not linear layers of this model; its linear layers are "
                          f"{sorted(known)}")
    return list(targets)


def peft_config(model: nn.Module, cfg: RunConfig, total_steps: int | None = None):
    """The peft config for cfg.method (None for full / freeze / bottleneck)."""
    import peft
    m, ft = cfg.method, cfg.method.finetuning
    task = _task_type(cfg)
    lc = m.lora
    if ft in ("lora", "qlora"):
        init = {"default": True, "gaussian": "gaussian", "pissa": "pissa"}[lc.init]
        return peft.LoraConfig(r=lc.rank, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                               target_modules=_targets(model, lc.targets, "method.lora.targets"),
                               use_rslora=lc.use_rslora, use_dora=lc.use_dora, init_lora_weights=init,
                               task_type=task, bias="none")
    if ft == "adalora":
        a = m.adalora
        if not total_steps:
            raise MethodError("method.finetuning=adalora needs the number of training steps; set train.max_steps")
        if a.tinit + a.tfinal >= total_steps:
            raise MethodError(f"method.adalora.tinit + tfinal ({a.tinit} + {a.tfinal}) must be below the "
                              f"{total_steps} training steps; lower them")
        return peft.AdaLoraConfig(init_r=a.init_rank, target_r=a.target_rank, tinit=a.tinit, tfinal=a.tfinal,
                                  deltaT=a.delta_t, total_step=total_steps, lora_alpha=lc.alpha,
                                  lora_dropout=lc.dropout,
                                  target_modules=_targets(model, lc.targets, "method.lora.targets"),
                                  task_type=task)
    if ft == "ia3":
        targets, ff = _ia3_targets(model, m.ia3.targets)
        return peft.IA3Config(target_modules=targets, feedforward_modules=ff, task_type=task)
    pl = m.prompt
    if ft == "prefix":
        return peft.PrefixTuningConfig(num_virtual_tokens=pl.num_virtual_tokens, task_type=task)
    if ft == "prompt":
        kw = {}
        if pl.init_text.strip():
            kw = dict(prompt_tuning_init="TEXT", prompt_tuning_init_text=pl.init_text,
                      tokenizer_name_or_path=str(getattr(model, "name_or_path", "")))
        return peft.PromptTuningConfig(num_virtual_tokens=pl.num_virtual_tokens, task_type=task, **kw)
    if ft == "ptuning":
        return peft.PromptEncoderConfig(num_virtual_tokens=pl.num_virtual_tokens,
                                        encoder_hidden_size=pl.encoder_hidden_size, task_type=task)
    return None


def _ia3_targets(model: nn.Module, targets) -> tuple[list[str], list[str]]:
    """IA3 targets and which of them are feed-forward (scaled on their input, not output)."""
    if targets == "all":
        from peft.utils.constants import (TRANSFORMERS_MODELS_TO_IA3_FEEDFORWARD_MODULES_MAPPING as FF,
                                          TRANSFORMERS_MODELS_TO_IA3_TARGET_MODULES_MAPPING as TM)
        mtype = getattr(getattr(model, "config", None), "model_type", None)
        if mtype in TM:
            return list(TM[mtype]), list(FF[mtype])
        known = linear_module_names(model)
        targets = [n for n in known if n in ("k_proj", "v_proj") or n in FFN_OUT_NAMES]
        if not targets:
            raise MethodError(f"method.ia3.targets: cannot guess IA3 targets for {mtype}; name them from "
                              f"{known}")
    else:
        targets = _targets(model, targets, "method.ia3.targets")
    return list(targets), [t for t in targets if t in FFN_OUT_NAMES]


def apply(model: nn.Module, cfg: RunConfig, total_steps: int | None = None,
          run_dir: str | Path | None = None) -> nn.Module:
    """Make the chosen weights trainable (and add adapters); return the model to train."""
    ft = cfg.method.finetuning
    if ft in ("full", "freeze", "bottleneck") and _is_quantized(model):
        raise MethodError(f"method.finetuning={ft} cannot train quantised weights; set model.quantization none")
    pc = peft_config(model, cfg, total_steps)
    if pc is not None:
        from peft import get_peft_model
        if _is_quantized(model):
            _freeze_quantized_base(model)
        model = get_peft_model(model, pc)  # for rm, peft trains a copy of the score head (modules_to_save)
        if ft in ("lora", "qlora") and cfg.method.lora.init == "pissa" and run_dir is not None:
            # Keep the initial adapter so the final one can be converted to plain LoRA on the original base.
            model.peft_config["default"].init_lora_weights = True
            model.save_pretrained(Path(run_dir) / PISSA_INIT_DIR)
            model.peft_config["default"].init_lora_weights = "pissa"
        return model
    if ft == "bottleneck":
        b = cfg.method.bottleneck
        return BottleneckModel(model, b.size, b.placement)
    if ft == "freeze":
        return _freeze(model, cfg)
    if ft == "full":
        for p in model.parameters():
            p.requires_grad_(True)
        return model
    raise MethodError(f"method.finetuning: {ft!r} is not supported")


def _freeze(model: nn.Module, cfg: RunConfig) -> nn.Module:
    fz = cfg.method.freeze
    layers = decoder_layers(model)
    n = fz.trainable_layers
    if n > len(layers):
        raise MethodError(f"method.freeze.trainable_layers: {n} is more than the model's {len(layers)} layers")
    for p in model.parameters():
        p.requires_grad_(False)
    chosen = 0
    for layer in layers[-n:]:
        for name, p in layer.named_parameters():
            if not fz.trainable_modules or any(t in name for t in fz.trainable_modules):
                p.requires_grad_(True)
                chosen += 1
    if fz.trainable_modules and not chosen:
        names = sorted({k.rsplit(".", 1)[0] for k, _ in layers[-1].named_parameters()})
        raise MethodError(f"method.freeze.trainable_modules: {fz.trainable_modules} match nothing in the layers; "
                          f"their modules are {names}")
    for extra in fz.extra_modules:
        hits = [p for name, p in model.named_parameters() if extra in name]
        if not hits:
            raise MethodError(f"method.freeze.extra_modules: {extra!r} matches no parameter of this model")
        for p in hits:
            p.requires_grad_(True)
    if cfg.method.stage == "rm":
        _train_score_head(model)
    return model


def _train_score_head(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        if ".score." in f".{name}" or name.startswith("score."):
            p.requires_grad_(True)


def _freeze_quantized_base(model: nn.Module) -> None:
    """What a 4 / 8-bit base needs before its adapters: every base weight frozen. Unlike peft's
    prepare_model_for_kbit_training, the embeddings, norms and output head stay at the compute dtype: peft
    upcasts them to fp32, which on Llama-3-8B's 128k vocabulary adds 2 GiB for two frozen matrices, a third
    of QLoRA's budget. (Gradient checkpointing and its input gradients are set by the Trainer and the worker.)"""
    for p in model.parameters():
        p.requires_grad_(False)


def _is_quantized(model: nn.Module) -> bool:
    return bool(getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False))


def save_kwargs(model: nn.Module, run_dir: str | Path) -> dict:
    """Extra save_pretrained arguments: a PiSSA adapter is converted to plain LoRA (rank 2r) against its
    initial state, so it loads on the original, unmodified base model."""
    init = Path(run_dir) / PISSA_INIT_DIR
    if is_adapter(model) and init.is_dir():
        return {"path_initial_model_for_weight_conversion": str(init)}
    return {}


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; 4-bit packed weights count as their real element number."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def is_adapter(model: nn.Module) -> bool:
    """True when only an adapter is saved (peft adapters and bottleneck adapters)."""
    if isinstance(model, BottleneckModel):
        return True
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)
