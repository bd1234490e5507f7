"""Hyperparameters tab: every optimisation setting of the run config, numbers as numbers."""
from __future__ import annotations

import gradio as gr

from webui import fields, method_panel, schedule_view, sweep_panel

LEFT = ["train.learning_rate", "train.epochs", "train.max_steps", "train.target_steps", "train.min_epochs",
        "train.batch_size", "train.grad_accum",
        "train.optimizer", "train.scheduler", "train.warmup_ratio", "train.warmup_steps", "train.weight_decay"]
RIGHT = ["train.max_grad_norm", "train.neftune_alpha", "train.seed", "train.logging_steps", "train.save_steps",
         "train.eval_steps", "train.save_total_limit", "train.gradient_checkpointing", "train.packing",
         "train.trained_logits_only", "train.liger_kernels", "train.report_to"]
# Several GPUs or machines (torchrun); folded away: most runs use one process.
DIST = ["distributed.nproc_per_node", "distributed.strategy", "distributed.cpu_offload", "distributed.backend",
        "distributed.nnodes", "distributed.master_addr", "distributed.master_port", "distributed.node_rank"]


def build(state: gr.State) -> tuple[list[fields.FieldWidget], method_panel.MethodViews, schedule_view.ScheduleView]:
    cfg = state.value.config
    steps = schedule_view.build(cfg)  # epochs and steps as resolved from the data, live as they are edited
    with gr.Row():
        with gr.Column(scale=1):
            left = fields.build(LEFT, cfg)
        with gr.Column(scale=1):
            right = fields.build(RIGHT, cfg)
    with gr.Accordion("Several GPUs / machines", open=cfg.distributed.nproc_per_node * cfg.distributed.nnodes > 1):
        gr.Markdown("More than one process starts the run under torchrun; for a cluster, "
                    "`python app.py launch-script CONFIG --nodes N` writes a SLURM file.")
        dist = fields.build(DIST, cfg)
    views = method_panel.build(cfg, table=False)  # the memory estimate, live as batch / cutoff change
    sweep_panel.build(state)  # a list of values for a field: one queued run per combination
    return left + right + dist, views, steps
