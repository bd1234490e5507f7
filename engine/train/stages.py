"""Training stages: which trainer runs, on which rows, with which arguments and collator.

pt and sft use the Hugging Face Trainer on the rows engine.data.pipeline builds; dpo, orpo, simpo, kto
and rm use trl 1.x's trainers on prompt / chosen / rejected rows from engine.data.pairs (rendered through
the tokenizer's chat template by trl, as conversations); grpo and ppo use trl's GRPOTrainer on prompts
from engine.data.prompts with the rewards of engine.train.rewards (engine.train.rl).

trl 1.x map: dpo -> trl.DPOTrainer; simpo -> trl.experimental.cpo.CPOTrainer (loss_type simpo,
cpo_alpha 0); orpo -> trl.experimental.orpo.ORPOTrainer; kto -> trl.KTOTrainer (each pair becomes one
good and one bad example); rm -> trl.RewardTrainer on a sequence-classification head; grpo and ppo ->
trl.GRPOTrainer (trl 1.x removed PPOTrainer: ppo runs the clipped objective with a KL penalty and
group-relative advantages, no value network). Heavy (trl, transformers, datasets), imported lazily per stage.
"""
from __future__ import annotations

from engine.config import RunConfig
from engine.config.method import PAIR_STAGES, PROMPT_LEARNING
from engine.config.rl import RL_STAGES


def uses_pairs(cfg: RunConfig) -> bool:
    return cfg.method.stage in PAIR_STAGES


def uses_prompts(cfg: RunConfig) -> bool:
    """grpo / ppo: prompts (and reference answers) to sample completions for."""
    return cfg.method.stage in RL_STAGES


def args_class(cfg: RunConfig):
    """(TrainingArguments subclass, extra keyword arguments) for the stage."""
    s, p, n = cfg.method.stage, cfg.method.pref, cfg.data.cutoff_len
    if s == "dpo":
        from trl import DPOConfig
        return DPOConfig, dict(beta=p.beta, loss_type=[p.dpo_loss], max_length=n)
    if s == "simpo":
        from trl.experimental.cpo import CPOConfig
        return CPOConfig, dict(beta=p.beta, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=p.simpo_gamma,
                               max_length=n)
    if s == "orpo":
        from trl.experimental.orpo import ORPOConfig
        return ORPOConfig, dict(beta=p.beta, max_length=n)
    if s == "kto":
        from trl import KTOConfig
        return KTOConfig, dict(beta=p.beta, desirable_weight=p.kto_desirable_weight,
                               undesirable_weight=p.kto_undesirable_weight, max_length=n)
    if s == "rm":
        from trl import RewardConfig
        return RewardConfig, dict(max_length=n)
    if s in RL_STAGES:
        from engine.train import rl
        return rl.args(cfg)
    from transformers import TrainingArguments
    return TrainingArguments, {}


def total_steps(cfg: RunConfig, n_rows: int) -> int:
    """Optimizer steps the run will take (AdaLoRA's schedule needs it before training)."""
    import math
    if cfg.train.max_steps:
        return cfg.train.max_steps
    if uses_prompts(cfg):  # each prompt is sampled method.rl.generations times; the batch counts completions
        n_rows *= cfg.method.rl.generations
    per_epoch = max(1, math.ceil(n_rows / cfg.train.batch_size) // cfg.train.grad_accum)
    return max(1, math.ceil(per_epoch * cfg.train.epochs))


def _trainer_class(cfg: RunConfig):
    s = cfg.method.stage
    if s == "dpo":
        from trl import DPOTrainer as T
    elif s == "simpo":
        from trl.experimental.cpo import CPOTrainer as T
    elif s == "orpo":
        from trl.experimental.orpo import ORPOTrainer as T
    elif s == "kto":
        from trl import KTOTrainer as T
    elif s == "rm":
        from trl import RewardTrainer as T
    elif s in RL_STAGES:
        from trl import GRPOTrainer

        from engine.train.rl import trainer_class
        T = trainer_class(GRPOTrainer)
    else:
        from transformers import Trainer as T
    if cfg.method.finetuning == "bottleneck":
        from engine.modeling.bottleneck import trainer_class
        T = trainer_class(T)
    from engine.train.checkpoints import atomic
    return atomic(T)  # checkpoints appear whole or not at all, whichever trainer runs


def callbacks(cfg: RunConfig, model) -> list:
    """Callbacks a method needs (AdaLoRA re-allocates its ranks after every optimizer step)."""
    if cfg.method.finetuning != "adalora":
        return []
    from transformers import TrainerCallback

    class AdaLoraRankAllocation(TrainerCallback):
        def on_optimizer_step(self, args, state, control, **kw):
            model.base_model.update_and_allocate(state.global_step)

    return [AdaLoraRankAllocation()]


def collator(cfg: RunConfig, tokenizer, dtype=None, model=None):
    """(data collator, loss function) for pt / sft. Packing and trained-positions-only logits are off for
    prompt-learning methods: peft prepends virtual tokens and drops position ids, which would let packed
    examples attend to each other and misalign the kept-logits mask. dtype: the weights' (packing 'auto'
    needs a half-precision variable-length kernel); model: given, its output head is fused into the loss
    where Liger makes that exact (engine.modeling.liger.fuse_head)."""
    from engine.train import collate as batching
    from engine.train.loss import FusedHeadLoss, trained_positions_loss
    packing, sparse = batching.use_packing(cfg.train.packing, dtype), cfg.train.trained_logits_only
    if cfg.method.finetuning in PROMPT_LEARNING and (packing or sparse):
        print(f"note: {cfg.method.finetuning} adds virtual tokens, so this run uses padded batches with full "
              "logits (train.packing and train.trained_logits_only are ignored)", flush=True)
        packing = sparse = False
    if cfg.method.finetuning == "adalora" and sparse:
        # AdaLoRA adds its orthogonality penalty to the model's own loss, which a custom loss would bypass.
        sparse = False
    collate = batching.packed(sparse) if packing else batching.padded(tokenizer.pad_token_id, sparse)
    if not sparse:
        return collate, None
    from engine.modeling import liger
    head = liger.fuse_head(model, cfg) if model is not None else None
    return collate, FusedHeadLoss(head) if head is not None else trained_positions_loss


def build_trainer(cfg: RunConfig, model, tokenizer, args, train_rows, val_rows, callbacks_, collate=None,
                  loss_func=None, events=None):
    """The trainer for cfg.method.stage, with the method's optimizer (LoRA+) and callbacks; events: where a
    grpo / ppo run writes its sample completions."""
    from engine.train.optimizers import loraplus
    T = _trainer_class(cfg)
    opt = loraplus(model, cfg)
    kw = dict(model=model, args=args, processing_class=tokenizer, callbacks=callbacks_ + callbacks(cfg, model),
              optimizers=(opt, None))
    if uses_prompts(cfg):
        from engine.train import rl
        return rl.build(T, cfg, train_rows, val_rows, kw, events)
    if not uses_pairs(cfg):
        return T(train_dataset=train_rows, eval_dataset=val_rows or None, data_collator=collate,
                 compute_loss_func=loss_func, **kw)
    from datasets import Dataset
    return T(train_dataset=Dataset.from_list(train_rows),
             eval_dataset=Dataset.from_list(val_rows) if val_rows else None, **kw)
