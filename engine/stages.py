"""Training stages: which trainer runs, on which rows. pt and sft use the Hugging Face Trainer on the
rows engine.data builds; dpo, orpo, simpo, kto and rm use trl 1.x's trainers on prompt / chosen /
rejected rows (rendered through the tokenizer's chat template by trl, as conversations).

trl 1.x map: dpo -> trl.DPOTrainer; simpo -> trl.experimental.cpo.CPOTrainer (loss_type simpo,
cpo_alpha 0); orpo -> trl.experimental.orpo.ORPOTrainer; kto -> trl.KTOTrainer (each pair becomes one
good and one bad example); rm -> trl.RewardTrainer on a sequence-classification head. PPO was removed
from trl 1.x, so the config refuses it. Heavy module.
"""
from __future__ import annotations

from engine.config import RunConfig
from engine.method_config import PREFERENCE_STAGES, PROMPT_LEARNING

PAIR_STAGES = PREFERENCE_STAGES + ("rm",)


def uses_pairs(cfg: RunConfig) -> bool:
    return cfg.method.stage in PAIR_STAGES


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
    from transformers import TrainingArguments
    return TrainingArguments, {}


def total_steps(cfg: RunConfig, n_rows: int) -> int:
    """Optimizer steps the run will take (AdaLoRA's schedule needs it before training)."""
    import math
    if cfg.train.max_steps:
        return cfg.train.max_steps
    per_epoch = max(1, math.ceil(n_rows / cfg.train.batch_size) // cfg.train.grad_accum)
    return max(1, math.ceil(per_epoch * cfg.train.epochs))


def _trl_row(ex, stage: str) -> list[dict]:
    """A parsed preference pair (engine.data.formats.Preference) as trl's conversational rows."""
    prompt = list(ex.prompt_messages)
    good, bad = ([{"role": "assistant", "content": ex.chosen}], [{"role": "assistant", "content": ex.rejected}])
    if stage == "kto":  # unpaired: one good and one bad example per pair
        return [{"prompt": prompt, "completion": good, "label": True},
                {"prompt": prompt, "completion": bad, "label": False}]
    return [{"prompt": prompt, "chosen": good, "rejected": bad}]


def pair_rows(cfg: RunConfig):
    """(train, val, report) of conversational preference rows for the stage, parsed by engine.data
    (which names every bad row) and put in trl's dict format."""
    import random

    from engine.data import checks, formats, sources
    from engine.data.files import where
    from engine.data.files import DataError
    from engine.data.pipeline import DataReport
    d, report, out = cfg.data, DataReport(), []
    for name in d.datasets:
        loaded = sources.load(name, d.format, d.columns)
        err = checks.stage_error(loaded, cfg.method.stage)
        if err is None and loaded.spec.format != "preference":
            err = DataError(f"{loaded.source}: is {loaded.spec.format}, but the {cfg.method.stage} stage trains on "
                            "preference pairs (prompt / chosen / rejected)")
        if err:
            raise err
        report.formats[name] = loaded.spec.format
        rows = loaded.rows[: d.max_samples] if d.max_samples else loaded.rows
        report.rows += len(rows)
        for r in rows:
            ex = formats.convert(r.data, loaded.spec)
            if isinstance(ex, formats.RowProblem):
                if d.on_bad_rows == "fail":
                    raise DataError(f"{where(loaded.source, r)}: {ex.message}")
                report.dropped_bad += 1
                report.problems.append(f"{where(loaded.source, r)}: {ex.message}")
                continue
            out += _trl_row(ex, cfg.method.stage)
    if not out:
        raise DataError("no usable preference rows; check the files")
    random.Random(cfg.train.seed).shuffle(out)
    n_val = max(1, min(int(round(len(out) * d.val_size)), len(out) - 1)) if d.val_size > 0 else 0
    val, train = out[:n_val], out[n_val:]
    report.kept, report.train, report.val = len(out), len(train), len(val)
    return train, val, report


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
    else:
        from transformers import Trainer as T
    if cfg.method.finetuning == "bottleneck":
        from engine.bottleneck import trainer_class
        T = trainer_class(T)
    from engine.checkpointing import atomic
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


def collator(cfg: RunConfig, tokenizer):
    """(data collator, loss function) for pt / sft. Packing and trained-positions-only logits are off for
    prompt-learning methods: peft prepends virtual tokens and drops position ids, which would let packed
    examples attend to each other and misalign the kept-logits mask."""
    from engine import batching
    from engine.loss import trained_positions_loss
    packing, sparse = batching.use_packing(cfg.train.packing), cfg.train.trained_logits_only
    if cfg.method.finetuning in PROMPT_LEARNING and (packing or sparse):
        print(f"note: {cfg.method.finetuning} adds virtual tokens, so this run uses padded batches with full "
              "logits (train.packing and train.trained_logits_only are ignored)", flush=True)
        packing = sparse = False
    if cfg.method.finetuning == "adalora" and sparse:
        # AdaLoRA adds its orthogonality penalty to the model's own loss, which a custom loss would bypass.
        sparse = False
    collate = batching.packed(sparse) if packing else batching.padded(tokenizer.pad_token_id, sparse)
    return collate, trained_positions_loss if sparse else None


def build_trainer(cfg: RunConfig, model, tokenizer, args, train_rows, val_rows, callbacks_, collate=None,
                  loss_func=None):
    """The trainer for cfg.method.stage, with the method's optimizer (LoRA+) and callbacks."""
    from engine.optimizers import loraplus
    T = _trainer_class(cfg)
    opt = loraplus(model, cfg)
    kw = dict(model=model, args=args, processing_class=tokenizer, callbacks=callbacks_ + callbacks(cfg, model),
              optimizers=(opt, None))
    if not uses_pairs(cfg):
        return T(train_dataset=train_rows, eval_dataset=val_rows or None, data_collator=collate,
                 compute_loss_func=loss_func, **kw)
    from datasets import Dataset
    return T(train_dataset=Dataset.from_list(train_rows),
             eval_dataset=Dataset.from_list(val_rows) if val_rows else None, **kw)
