"""The Hugging Face Trainer's arguments for a run: the train section, the precision, the stage's
arguments class (trl's for preference stages) and the distributed strategy's settings. Heavy."""
from __future__ import annotations

from pathlib import Path

from engine import config as C
from engine.modeling import load as models
from engine.runs import trackers
from engine.train import collate as batching
from engine.train import ranks as distributed
from engine.train.optimizers import hf_optim


def training_args(cfg: C.RunConfig, run_dir: Path, has_val: bool, dtype, args_class=None, extra=None, schedule=None):
    """The Trainer's arguments; the distributed section adds DDP / FSDP / DeepSpeed settings; args_class /
    extra: the stage's TrainingArguments subclass (trl) and its fields; schedule: the resolved epochs and steps
    (engine.preflight.schedule), passed as an exact step count."""
    import torch
    from transformers import TrainingArguments
    t = cfg.train
    cuda = torch.cuda.is_available()
    return (args_class or TrainingArguments)(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        num_train_epochs=schedule.epochs if schedule and schedule.epochs else (t.epochs or 3.0),
        max_steps=(schedule.total_steps if schedule and schedule.total_steps else t.max_steps) or -1,
        lr_scheduler_type=t.scheduler,
        # transformers 5: a float < 1 is a ratio of the total steps, a whole number >= 1 a count of steps
        warmup_steps=t.warmup_steps if t.warmup_steps > 0 else t.warmup_ratio,
        max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else 1e9,
        weight_decay=t.weight_decay,
        neftune_noise_alpha=t.neftune_alpha or None,
        seed=t.seed,
        data_seed=t.seed,
        logging_steps=t.logging_steps,
        logging_first_step=True,
        save_strategy="steps",
        save_steps=t.save_steps,
        save_total_limit=t.save_total_limit,
        eval_strategy="steps" if has_val else "no",
        eval_steps=t.eval_steps if has_val else None,
        gradient_checkpointing=t.gradient_checkpointing,
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.gradient_checkpointing else None,
        # On CPU, fp32 weights with bf16 autocast where the processor computes bf16 natively (AVX512-BF16 /
        # AMX): 2.1x the fp32 step on the 2-core machine, same loss to 1e-5; master weights stay fp32.
        bf16=(cuda and dtype == torch.bfloat16) or (not cuda and models.cpu_bf16_autocast(cfg)),
        fp16=cuda and dtype == torch.float16,
        use_cpu=not cuda,
        # The Trainer's own tracker integrations; engine.runs.trackers.environment points each into the run folder
        report_to=list(t.report_to) or "none",
        run_name=run_dir.name,
        project=trackers.PROJECT,
        remove_unused_columns=False,
        dataloader_num_workers=0,
        # Packed batches have no padding at all; padded ones are counted through their attention mask.
        include_num_input_tokens_seen="all" if batching.use_packing(t.packing, dtype) else "non_padding",
        disable_tqdm=True,
        save_only_model=False,
        optim=hf_optim(cfg),
        **distributed.trainer_kwargs(cfg, cuda),
        **(extra or {}),
    )
