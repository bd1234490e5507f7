"""The table of methods for the chosen model, as the Method and Hyperparameters tabs show it before
Train: the model's real linear module names (LoRA targets), trainable parameters and inference cost per
method, and the memory estimate in plain words. Light: no torch, no gradio; everything comes from
config.json and the safetensors headers (engine.preflight.shape)."""
from __future__ import annotations

from engine import config as C
from engine.preflight import memory as memory_estimate
from engine.preflight import shape as model_shape

TABLE_HEADERS = ["method", "trainable params", "% of model", "extra inference latency"]
NOT_HERE = ("The model's files are not on this machine yet (a hub model downloads when training starts), "
            "so parameter counts and the memory estimate appear once it is downloaded.")


def target_choices(cfg: C.RunConfig) -> list[str]:
    """'all' and the model's linear layer names, to pick LoRA / IA3 targets from."""
    shape = model_shape.of_or_none(cfg.model.name_or_path)
    return ["all"] + (shape.linear_names if shape else [])


def params_table(cfg: C.RunConfig) -> list[list]:
    """Rows of TABLE_HEADERS for every method on this model with the current settings (empty if unknown)."""
    shape = model_shape.of_or_none(cfg.model.name_or_path)
    if shape is None:
        return []
    return [[r["method"] + (" (chosen)" if r["method"] == cfg.method.finetuning else ""),
             f"{r['trainable_params']:,}", f"{r['trainable_pct']:.3f}%", r["inference_latency"]]
            for r in memory_estimate.params_table(shape, cfg)]


def estimate_markdown(cfg: C.RunConfig) -> str:
    """Parameters, trainable share, estimated peak GPU memory against this machine's GPU, and the
    warning with the one change that makes it fit."""
    try:
        est = memory_estimate.for_config(cfg)
    except (OSError, ValueError, KeyError) as e:
        return f"Memory estimate unavailable: {e}"
    if est is None:
        return NOT_HERE
    lines = [f"**{est.total_params / 1e6:,.1f}M parameters, {est.trainable_params / 1e6:,.3f}M trainable "
             f"({est.trainable_pct:.3f}%)**",
             f"Estimated peak GPU memory: **{est.peak_gib:.2f} GiB**"
             + (f" of {est.gpu_gib:.1f} GiB" if est.gpu_gib else ""),
             " · ".join(f"{k} {v:.2f}" for k, v in est.parts_gib.items() if v) + " GiB",
             f"(batch {cfg.train.batch_size} x cutoff {cfg.data.cutoff_len} tokens"
             + (f" + {cfg.method.rl.max_completion_length} sampled" if cfg.method.stage in ("grpo", "ppo") else "")
             + ", every row assumed full length)"]
    warn = est.warning()
    if warn:
        lines.append(("⚠️ " if est.fits is False else "") + warn)
    return "\n\n".join(lines)
