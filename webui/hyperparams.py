"""Hyperparameters tab: every optimisation setting of the run config, numbers as numbers."""
from __future__ import annotations

import gradio as gr

from webui import fields, method_panel

LEFT = ["train.learning_rate", "train.epochs", "train.max_steps", "train.batch_size", "train.grad_accum",
        "train.optimizer", "train.scheduler", "train.warmup_ratio", "train.weight_decay"]
RIGHT = ["train.max_grad_norm", "train.seed", "train.logging_steps", "train.save_steps", "train.eval_steps",
         "train.save_total_limit", "train.gradient_checkpointing", "train.packing", "train.trained_logits_only"]


def build(state: gr.State) -> tuple[list[fields.FieldWidget], method_panel.MethodViews]:
    cfg = state.value.config
    with gr.Row():
        with gr.Column(scale=1):
            left = fields.build(LEFT, cfg)
        with gr.Column(scale=1):
            right = fields.build(RIGHT, cfg)
    views = method_panel.build(cfg, table=False)  # the memory estimate, live as batch / cutoff change
    return left + right, views
