"""The run config's method section: the stage (pt / sft / preference / reward) and the fine-tuning
method (LoRA and its variants, QLoRA, AdaLoRA, IA3, prompt learning, bottleneck adapters, freeze,
full), each with its own fields, and which field applies to which method. Light: stdlib only.

Which fields matter for which method is declared in ``FIELDS_FOR`` so the Method tab can show only
the relevant ones.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from engine.config import layer_choice
from engine.config.rl import RL_STAGES, RLSection
from engine.config.schema import F, N

Stage = Literal["sft", "pt", "dpo", "orpo", "simpo", "kto", "rm", "ppo", "grpo"]
Finetuning = Literal["lora", "qlora", "full", "freeze", "adalora", "ia3", "prefix", "prompt", "ptuning",
                     "bottleneck", "ptuning_v2"]

# Stages the training worker runs (grpo and ppo: engine.config.rl says exactly what they run).
IMPLEMENTED_STAGES = ("sft", "pt", "dpo", "orpo", "simpo", "kto", "rm") + RL_STAGES
PREFERENCE_STAGES = ("dpo", "orpo", "simpo", "kto")
PAIR_STAGES = PREFERENCE_STAGES + ("rm",)  # stages that train on prompt / chosen / rejected rows
UNAVAILABLE_STAGES: dict[str, str] = {}  # stage -> why this version refuses it
PROMPT_LEARNING = ("prefix", "prompt", "ptuning", "ptuning_v2")
LORA_FAMILY = ("lora", "qlora")
# Methods whose trained weights fold into the base weights, so inference costs nothing extra.
MERGES_AWAY = ("lora", "qlora", "adalora", "ia3", "full", "freeze")


@dataclass
class LoraSection:
    rank: int = F(8, "LoRA rank r: size of the low-rank update. Higher learns more, costs more.", min=1, max=1024,
                  label="LoRA rank", widget="slider", step=1)
    alpha: float = F(16.0, "LoRA alpha: the update is scaled by alpha / rank (alpha / sqrt(rank) with rsLoRA).",
                     min=0.0, max=2048.0, label="LoRA alpha", widget="slider", step=1)
    dropout: float = F(0.0, "Dropout on the LoRA input during training.", min=0.0, max=0.9, label="LoRA dropout",
                       widget="slider", step=0.01)
    targets: Union[str, list[str]] = F("all",
                                       "Modules to adapt: 'all' = every linear layer of the model except the "
                                       "output head, or a list of module names such as [q_proj, v_proj].",
                                       label="LoRA target modules", widget="names")
    use_rslora: bool = F(False, "rsLoRA: scale by alpha / sqrt(rank) instead of alpha / rank, so high ranks "
                                "keep learning (helps from rank ~32 up).", label="rsLoRA")
    use_dora: bool = F(False, "DoRA: split each weight into magnitude and direction and adapt both; closer to "
                              "full fine-tuning at the same rank, ~1.5-2x slower to train. Merges away.", label="DoRA")
    init: Literal["default", "gaussian", "pissa"] = F(
        "default", "How the adapter starts. default: B = 0 (starts as the base model); gaussian: the same with "
                   "Gaussian A; pissa: A and B from the weight's top singular vectors, which often converges "
                   "faster (the saved adapter is converted so it loads on the original base).",
        label="LoRA initialisation")
    loraplus_lr_ratio: float = F(0.0, "LoRA+: train the B matrices this many times faster than A (16 is the "
                                      "paper's choice). 0 = off.", min=0.0, max=1000.0,
                                  label="LoRA+ learning-rate ratio (B over A)")


@dataclass
class QuantSection:
    type: Literal["nf4", "fp4"] = F("nf4", "4-bit number format for QLoRA: nf4 (normal float, best for "
                                           "normally distributed weights) or fp4.", label="4-bit type")
    double_quant: bool = F(True, "Quantise the quantisation constants too: saves ~0.4 bits per weight.",
                           label="double quantisation")
    compute_dtype: Literal["auto", "bf16", "fp16", "fp32"] = F(
        "auto", "Precision the 4-bit weights are unpacked to for matrix products. auto = model.dtype.",
        label="4-bit compute dtype")


@dataclass
class AdaLoraSection:
    init_rank: int = F(12, "AdaLoRA: rank every module starts with.", min=1, max=1024)
    target_rank: int = F(8, "AdaLoRA: average rank left after pruning the least important directions.",
                         min=1, max=1024)
    tinit: int = F(0, "AdaLoRA: warm-up steps before ranks are pruned.", min=0)
    tfinal: int = F(0, "AdaLoRA: final steps with the ranks fixed.", min=0)
    delta_t: int = F(1, "AdaLoRA: prune ranks every this many steps.", min=1)


@dataclass
class IA3Section:
    targets: Union[str, list[str]] = F("all", "IA3: modules whose activations are rescaled. 'all' = the "
                                              "attention keys / values and the feed-forward output layer.",
                                      label="IA3 target modules", widget="names")


@dataclass
class PromptLearningSection:
    num_virtual_tokens: int = F(20, "Prefix / prompt / P-tuning (v1, v2): number of trainable virtual tokens. Prefix "
                                    "tuning works with tens to hundreds; each one is attended to by every token, in "
                                    "training and at every generated token.", min=1, max=1024)
    init_text: str = F("", "Where the virtual tokens start (empty = random). Prompt tuning: this text's token "
                           "embeddings. Prefix / P-Tuning v2: the keys and values the model itself computes for "
                           "this text at every layer (the prefix-tuning paper: real words beat random). The text "
                           "is repeated or cut to num_virtual_tokens tokens.")
    encoder_hidden_size: int = F(128, "P-tuning (v1): hidden width of the encoder (MLP or LSTM) that produces the "
                                      "virtual tokens.", min=1, max=65536)
    encoder: Literal["lstm", "mlp"] = F(
        "lstm", "P-tuning (v1): what encodes the virtual tokens while training. lstm: a bidirectional two-layer LSTM "
                "then a two-layer MLP, as in the original method (several times the MLP's weights at the same "
                "width, 8x on SmolLM2-135M, and a sequential pass over the virtual tokens each step); mlp: a "
                "three-layer MLP, cheaper. Only the encoded tokens are saved, so inference costs the same either "
                "way.", label="P-tuning encoder")
    prefix_projection: bool = F(False, "Prefix: reparameterise the prefix through a two-layer MLP (small prefix -> "
                                       "tanh -> every layer's keys and values), which the prefix-tuning paper "
                                       "found steadies training. Costs the MLP's weights while training only: the "
                                       "saved adapter holds the computed prefix.", label="prefix projection (MLP)")
    projection_hidden_size: int = F(512, "Prefix projection / P-Tuning v2 encoder: hidden width of the MLP or LSTM "
                                         "that maps the small prefix to the layers' keys and values.",
                                    min=1, max=65536, label="projection hidden size")
    layers: str = F("all", "P-Tuning v2: which layers get prompts: 'all', 'top N' (the N layers nearest the output; "
                           "the paper found the higher layers matter more), 'bottom N', or layer numbers from 0 "
                           "such as '0, 4, 8-11'. Fewer layers: fewer weights and less attention work.",
                    label="prompted layers")
    reparameterization: Literal["none", "mlp", "lstm"] = F(
        "none", "P-Tuning v2: none trains the deep prompts directly (the method's default); mlp passes a small "
                "prefix through a two-layer MLP as prefix tuning does; lstm through a bidirectional LSTM and an "
                "MLP. An encoder adds its weights to training and to the saved adapter, and runs once per forward "
                "pass.",
        label="P-Tuning v2 reparameterisation")


@dataclass
class BottleneckSection:
    size: int = F(64, "Bottleneck adapter width: hidden -> size -> hidden, after each block.", min=1,
                  max=65536, label="bottleneck size")
    placement: Literal["both", "attention", "ffn"] = F(
        "both", "Where adapters sit: after attention and after the feed-forward block (Houlsby), or one only "
                "(Pfeiffer-style ffn).")


@dataclass
class FreezeSection:
    trainable_layers: int = F(2, "Freeze tuning: train only the last N transformer layers.", min=1,
                              label="trainable layers")
    trainable_modules: list[str] = F([], "Freeze tuning: inside those layers train only parameters whose "
                                         "name contains one of these (e.g. [mlp]); empty = whole layers.",
                                     widget="names")
    extra_modules: list[str] = F([], "Freeze tuning: also train these modules outside the layers "
                                     "(e.g. [embed_tokens, norm]).", widget="names")


@dataclass
class PreferenceSection:
    beta: float = F(0.1, "DPO / KTO / SimPO: how far the policy may move from the reference (higher = "
                         "stays closer). ORPO: weight of the odds-ratio term.", min_exclusive=0.0, label="beta")
    dpo_loss: Literal["sigmoid", "ipo", "hinge", "robust"] = F(
        "sigmoid", "DPO loss: sigmoid (the paper's), ipo, hinge, or robust (tolerates flipped labels).")
    simpo_gamma: float = F(0.5, "SimPO: target reward margin between chosen and rejected.", min=0.0)
    kto_desirable_weight: float = F(1.0, "KTO: weight of the good (chosen) examples.", min=0.0)
    kto_undesirable_weight: float = F(1.0, "KTO: weight of the bad (rejected) examples.", min=0.0)


@dataclass
class MethodConfig:
    stage: Stage = F("sft", "Training stage. pt: continued pre-training on plain text; sft: supervised "
                            "fine-tuning on conversations; dpo / orpo / simpo / kto: preference training on "
                            "prompt / chosen / rejected rows; rm: a reward model scoring replies; grpo: online "
                            "RL on prompts with reward functions; ppo: RLHF step 3, from an sft run against an "
                            "rm run's reward model (or reward functions): PPO's clipped objective and KL penalty, "
                            "but group-relative advantages, with no value network and no GAE (see method.rl).")
    finetuning: Finetuning = F("lora",
                               "lora: small trainable adapters on frozen weights; qlora: the same on 4-bit weights; "
                               "adalora: LoRA that moves rank to where it helps; ia3: learned rescaling "
                               "vectors (fewest weights); prefix / prompt / ptuning: trainable virtual tokens; "
                               "ptuning_v2: trainable prompts in the layers you choose; "
                               "bottleneck: small adapter layers after each block; full: every weight trains; "
                               "freeze: only the last layers train.", widget="radio")
    lora: LoraSection = N(LoraSection, "LoRA / QLoRA settings.")
    quant: QuantSection = N(QuantSection, "QLoRA 4-bit settings.")
    adalora: AdaLoraSection = N(AdaLoraSection, "AdaLoRA settings.")
    ia3: IA3Section = N(IA3Section, "IA3 settings.")
    prompt: PromptLearningSection = N(PromptLearningSection, "Prefix / prompt / P-tuning settings.")
    bottleneck: BottleneckSection = N(BottleneckSection, "Bottleneck adapter settings.")
    freeze: FreezeSection = N(FreezeSection, "Freeze-tuning settings.")
    pref: PreferenceSection = N(PreferenceSection, "Preference-training settings (dpo / orpo / simpo / kto).")
    rl: RLSection = N(RLSection, "Reinforcement-learning settings (grpo / ppo): sampling, objective, rewards.")


# Which sub-sections each method / stage uses (the Method tab shows these, hides the rest).
FIELDS_FOR = {
    "lora": ("method.lora",), "qlora": ("method.lora", "method.quant"), "adalora": ("method.lora",
                                                                                     "method.adalora"),
    "ia3": ("method.ia3",), "prefix": ("method.prompt",), "prompt": ("method.prompt",),
    "ptuning": ("method.prompt",), "bottleneck": ("method.bottleneck",), "freeze": ("method.freeze",),
    "full": (), "ptuning_v2": ("method.prompt",),
}
STAGE_FIELDS = {"dpo": ("method.pref.beta", "method.pref.dpo_loss"), "orpo": ("method.pref.beta",),
                "simpo": ("method.pref.beta", "method.pref.simpo_gamma"),
                "kto": ("method.pref.beta", "method.pref.kto_desirable_weight",
                        "method.pref.kto_undesirable_weight"),
                "sft": (), "pt": (), "rm": (), "ppo": ("method.rl",), "grpo": ("method.rl",)}


def _targets_problems(key: str, targets) -> list[str]:
    if isinstance(targets, str) and targets != "all":
        return [f"{key}: {targets!r} must be 'all' or a list of module names"]
    if isinstance(targets, list) and (not targets or not all(t.strip() for t in targets)):
        return [f"{key}: the list must name at least one module, with no empty names"]
    return []


def method_problems(cfg) -> list[str]:
    """Problems across the method fields (and the model / train fields they depend on)."""
    m, p = cfg.method, []
    ft, stage = m.finetuning, m.stage
    p += _targets_problems("method.lora.targets", m.lora.targets)
    p += _targets_problems("method.ia3.targets", m.ia3.targets)
    if stage in UNAVAILABLE_STAGES:
        p.append(f"method.stage: {UNAVAILABLE_STAGES[stage]}")
    elif stage not in IMPLEMENTED_STAGES:
        p.append(f"method.stage: {stage!r} is not implemented; use one of {', '.join(IMPLEMENTED_STAGES)}")
    if ft == "qlora" and cfg.model.quantization == "8bit":
        p.append("model.quantization: qlora uses 4-bit weights; set it to '4bit' or 'none' (qlora sets 4bit)")
    quantized = ft == "qlora" or cfg.model.quantization != "none"
    if quantized and ft in ("full", "freeze", "bottleneck"):
        p.append(f"model.quantization: {ft} trains base weights or adds plain layers, which cannot sit on "
                 "quantised weights; set model.quantization to 'none' or use lora / qlora")
    if m.lora.init == "pissa" and quantized:
        p.append("method.lora.init: pissa rewrites the base weights, which cannot be done on quantised "
                 "weights; use init 'default' or turn quantisation off")
    if m.lora.init == "pissa" and ft not in LORA_FAMILY:
        p.append(f"method.lora.init: pissa applies to lora / qlora, not {ft}")
    if m.lora.loraplus_lr_ratio > 0 and ft not in LORA_FAMILY:
        p.append(f"method.lora.loraplus_lr_ratio: LoRA+ applies to lora / qlora, not {ft}; set it to 0")
    if ft == "adalora" and m.adalora.target_rank > m.adalora.init_rank:
        p.append(f"method.adalora.target_rank: {m.adalora.target_rank} must not exceed method.adalora.init_rank "
                 f"({m.adalora.init_rank}); AdaLoRA only prunes rank")
    if (m.lora.use_dora or m.lora.use_rslora) and ft not in LORA_FAMILY:
        p.append(f"method.lora.use_dora / use_rslora: these LoRA variants apply to lora / qlora, not {ft}")
    if stage == "rm" and ft in PROMPT_LEARNING + ("bottleneck",):
        p.append(f"method.finetuning: a reward model (stage rm) trains a score head; {ft} does not support it; "
                 "use lora, full or freeze")
    if stage in PREFERENCE_STAGES and ft in PROMPT_LEARNING:
        p.append(f"method.finetuning: {ft} is not supported for preference training ({stage}); use lora, "
                 "qlora, full or freeze")
    if ft == "ptuning_v2" and (why := layer_choice.problem(m.prompt.layers)):
        p.append(why)
    if ft == "prefix" and cfg.train.gradient_checkpointing:
        p.append("train.gradient_checkpointing: peft's prefix tuning passes its prefix through the layers' cache, "
                 "which breaks when checkpointing recomputes a layer; turn checkpointing off, or use ptuning_v2 with "
                 "method.prompt.layers 'all' (the same method, which works with it)")
    if stage in PREFERENCE_STAGES + ("rm",) and ft == "adalora":
        p.append(f"method.finetuning: adalora needs its rank schedule driven each step, which the {stage} "
                 "trainer does not do here; use lora")
    return p


# Which method-specific field applies to which method (the rest of a section applies to all of FIELDS_FOR's).
_ONLY_FOR = {
    "method.lora.rank": ("lora", "qlora"), "method.lora.use_rslora": ("lora", "qlora"),
    "method.lora.use_dora": ("lora", "qlora"), "method.lora.init": ("lora", "qlora"),
    "method.lora.loraplus_lr_ratio": ("lora", "qlora"),
    "method.prompt.init_text": ("prompt", "prefix", "ptuning_v2"), "method.prompt.encoder_hidden_size": ("ptuning",),
    "method.prompt.encoder": ("ptuning",), "method.prompt.prefix_projection": ("prefix",),
    "method.prompt.layers": ("ptuning_v2",), "method.prompt.reparameterization": ("ptuning_v2",),
}


def applies(key: str, cfg) -> bool | None:
    """Whether a method-related field means anything for this config (the Method tab hides those that
    do not); None for keys this module does not decide."""
    ft, stage = cfg.method.finetuning, cfg.method.stage
    if key == "model.quantization":
        return ft in ("lora", "adalora", "ia3")  # qlora is 4-bit by definition; the others train plain weights
    if key.startswith("method.rl."):
        from engine.config import rl
        return rl.applies(key, cfg)
    if key.startswith("method.pref."):
        return any(key == k for k in STAGE_FIELDS.get(stage, ()))
    if key.startswith("method.quant."):
        return ft == "qlora" or (cfg.model.quantization == "4bit" and ft in ("lora", "adalora", "ia3"))
    section = key.rsplit(".", 1)[0]
    if section in ("method.lora", "method.adalora", "method.ia3", "method.prompt", "method.bottleneck",
                   "method.freeze"):
        if key == "method.prompt.projection_hidden_size":  # only where an encoder is on
            return (ft == "prefix" and cfg.method.prompt.prefix_projection) or (
                ft == "ptuning_v2" and cfg.method.prompt.reparameterization != "none")
        if key in _ONLY_FOR:
            return ft in _ONLY_FOR[key]
        return section in FIELDS_FOR.get(ft, ())
    return None


def quantization(cfg) -> str:
    """The effective quantisation of the base weights: qlora implies 4bit."""
    return "4bit" if cfg.method.finetuning == "qlora" else cfg.model.quantization
