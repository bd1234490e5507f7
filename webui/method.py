"""Method tab: the stage, the fine-tuning method, how the base weights are loaded, and the method's own
settings; beside them, for the chosen model, each method's trainable parameters and inference cost,
the model's real module names, and the memory estimate (webui.method_panel).

Settings of methods and stages other than the chosen ones are hidden (see fields.applies)."""
from __future__ import annotations

import gradio as gr

from webui import fields, method_panel

METHOD_KEYS = ["method.finetuning", "method.stage", "model.quantization", "model.dtype", "model.trust_remote_code"]
LORA_KEYS = ["method.lora.rank", "method.lora.alpha", "method.lora.dropout", "method.lora.targets",
             "method.lora.use_rslora", "method.lora.use_dora", "method.lora.init", "method.lora.loraplus_lr_ratio"]
QUANT_KEYS = ["method.quant.type", "method.quant.double_quant", "method.quant.compute_dtype"]
ADALORA_KEYS = ["method.adalora.init_rank", "method.adalora.target_rank", "method.adalora.tinit",
                "method.adalora.tfinal", "method.adalora.delta_t"]
OTHER_KEYS = ["method.ia3.targets", "method.prompt.num_virtual_tokens", "method.prompt.init_text",
              "method.prompt.encoder_hidden_size", "method.bottleneck.size", "method.bottleneck.placement"]
FREEZE_KEYS = ["method.freeze.trainable_layers", "method.freeze.trainable_modules", "method.freeze.extra_modules"]
PROMPT_KEYS = ["method.prompt.encoder", "method.prompt.prefix_projection", "method.prompt.layers",
               "method.prompt.reparameterization", "method.prompt.projection_hidden_size"]
STAGE_KEYS = ["method.pref.beta", "method.pref.dpo_loss", "method.pref.simpo_gamma",
              "method.pref.kto_desirable_weight", "method.pref.kto_undesirable_weight"]
RL_KEYS = ["method.rl.generations", "method.rl.max_completion_length", "method.rl.temperature", "method.rl.beta",
           "method.rl.epsilon", "method.rl.iterations", "method.rl.weight_exact_match",
           "method.rl.weight_contains_answer", "method.rl.weight_format", "method.rl.format_regex",
           "method.rl.weight_length", "method.rl.length_target", "method.rl.weight_reward_model",
           "method.rl.reward_model_run", "method.rl.weight_python", "method.rl.reward_file",
           "method.rl.answer_column", "method.rl.policy_run"]
ALL_KEYS = (METHOD_KEYS + STAGE_KEYS + RL_KEYS + LORA_KEYS + QUANT_KEYS + ADALORA_KEYS + OTHER_KEYS + PROMPT_KEYS
            + FREEZE_KEYS)


def build(state: gr.State) -> tuple[list[fields.FieldWidget], method_panel.MethodViews]:
    cfg = state.value.config
    with gr.Row():
        with gr.Column(scale=1):
            method = fields.build(METHOD_KEYS + STAGE_KEYS + RL_KEYS, cfg)
        with gr.Column(scale=1):
            adapter = fields.build(LORA_KEYS + QUANT_KEYS + ADALORA_KEYS + OTHER_KEYS + PROMPT_KEYS + FREEZE_KEYS,
                                   cfg)
    views = method_panel.build(cfg)
    return method + adapter, views
