"""The training worker: `python -m engine.train --config saves/<run>/config.yaml`.

Top to bottom: read the config -> take the run's lock -> load tokenizer and model -> build the data
-> apply the method (LoRA / QLoRA / freeze / full) -> train with the Hugging Face Trainer, resuming
from the run's last checkpoint if there is one -> save the adapter (or model) with the resolved
config beside it. Every step is reported in saves/<run>/events.jsonl; SIGTERM / SIGINT saves a
checkpoint and exits cleanly; any failure ends with an error event in plain words.
"""
from __future__ import annotations

import argparse
import fcntl
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

from engine import config as C
from engine import distributed
from engine.events import EVENTS_FILE, EventWriter
from engine.failures import explain
from engine.runs import WORKER_FILE, _proc_start_time, checkpoints


class RunLocked(RuntimeError):
    pass


def take_lock(run_dir: Path):
    """One worker per run folder, ever: a second one exits at once."""
    f = open(run_dir / ".worker.lock", "a")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise RunLocked(f"Another worker is already training {run_dir.name}; stop it first.") from None
    return f


def write_worker_file(run_dir: Path) -> None:
    # Stop signals the process group: this worker's own, or that of torchrun (its parent) with every
    # rank in it; never a group that merely contains us (a test runner, a shell script).
    pgid = os.getpgid(0) if os.getpgid(0) in (os.getpid(), os.getppid()) else None
    info = {"pid": os.getpid(), "pgid": pgid, "proc_start": _proc_start_time(os.getpid()),
            "started": time.time(), "cmd": sys.argv, "world_size": distributed.world_size()}
    tmp = run_dir / (WORKER_FILE + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(run_dir / WORKER_FILE)


def training_args(cfg: C.RunConfig, run_dir: Path, has_val: bool, dtype, args_class=None, extra=None):
    """The Trainer's arguments; the distributed section adds DDP / FSDP / DeepSpeed settings; args_class /
    extra: the stage's TrainingArguments subclass (trl) and its fields."""
    import torch
    from transformers import TrainingArguments

    from engine import batching, models
    from engine.optimizers import hf_optim
    t = cfg.train
    cuda = torch.cuda.is_available()
    return (args_class or TrainingArguments)(
        output_dir=str(run_dir / "checkpoints"),
        per_device_train_batch_size=t.batch_size,
        per_device_eval_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=t.learning_rate,
        num_train_epochs=t.epochs,
        max_steps=t.max_steps or -1,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        max_grad_norm=t.max_grad_norm if t.max_grad_norm > 0 else 1e9,
        weight_decay=t.weight_decay,
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
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        # Packed batches have no padding at all; padded ones are counted through their attention mask.
        include_num_input_tokens_seen="all" if batching.use_packing(t.packing) else "non_padding",
        disable_tqdm=True,
        save_only_model=False,
        optim=hf_optim(cfg),
        **distributed.trainer_kwargs(cfg, cuda),
        **(extra or {}),
    )


def save_final(model, tokenizer, cfg: C.RunConfig, run_dir: Path, resolved: dict) -> Path:
    """The adapter (peft) or the model (full / freeze), written to a temp folder and renamed."""
    from engine.methods import is_adapter
    name = "adapter" if is_adapter(model) else "model"
    final = run_dir / name
    tmp = run_dir / f".tmp-{name}"
    shutil.rmtree(tmp, ignore_errors=True)
    from engine.methods import save_kwargs
    model.save_pretrained(tmp, safe_serialization=True, **save_kwargs(model, run_dir))
    tokenizer.save_pretrained(tmp)  # carries the chat template used in training
    C.save(cfg, tmp / "whetstone_config.yaml")
    (tmp / "whetstone_resolved.json").write_text(json.dumps(resolved, indent=1, default=str))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def save_final_sharded(trainer, tokenizer, cfg: C.RunConfig, run_dir: Path, resolved: dict) -> Path:
    """FSDP / DeepSpeed: every rank joins the Trainer's gathering save; rank 0 completes the folder."""
    from engine.methods import is_adapter
    name = "adapter" if is_adapter(trainer.model) else "model"
    tmp, final = run_dir / f".tmp-{name}", run_dir / name
    if distributed.is_main():
        shutil.rmtree(tmp, ignore_errors=True)
    distributed.barrier()
    trainer.save_model(str(tmp))  # gathers a full state dict; only rank 0 writes
    if distributed.is_main():
        tokenizer.save_pretrained(tmp)
        C.save(cfg, tmp / "whetstone_config.yaml")
        (tmp / "whetstone_resolved.json").write_text(json.dumps(resolved, indent=1, default=str))
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return final


def run(config_path: Path) -> int:
    run_dir = config_path.resolve().parent
    events = distributed.events_for_rank(run_dir / EVENTS_FILE)  # rank 0 writes; others only their failure
    cfg = None
    if distributed.is_main():  # one lock and one worker.json per run, held by rank 0
        try:
            lock = take_lock(run_dir)  # noqa: F841  (held until the process exits)
        except RunLocked as e:
            print(str(e), file=sys.stderr)
            return 3
        write_worker_file(run_dir)
    from engine.trainer_hooks import StopFlag
    flag = StopFlag()
    flag.install()
    try:
        cfg = C.load(config_path)
        events.status("starting", 0, pid=os.getpid(), world_size=distributed.world_size())
        return train(cfg, run_dir, events, flag)
    except KeyboardInterrupt:
        events.status("stopped", 0, reason="interrupted before the first checkpoint")
        return 130
    except BaseException as e:  # the UI must always learn why a run ended
        message = explain(e, cfg)
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        events.error(message, traceback=tb[-4000:], exception=type(e).__name__)
        events.status("failed", 0, reason=message)
        return 1
    finally:
        events.close()


def train(cfg: C.RunConfig, run_dir: Path, events: EventWriter, flag) -> int:
    import torch
    from transformers import set_seed

    from engine import methods, models, stages, telemetry
    from engine.data import pipeline, templates
    from engine.trainer_hooks import EventsCallback, StopOnSignal

    set_seed(cfg.train.seed)
    distributed.prepare_rank()
    if distributed.is_main() and (note := distributed.mismatch_note(cfg)):
        print(note, file=sys.stderr, flush=True)
    events.status("loading", 0, what="tokenizer and model")
    path = models.resolve_path(cfg.model.name_or_path)
    tokenizer = models.load_tokenizer(cfg, path)
    templates.apply(tokenizer, cfg.data.template)
    if cfg.method.finetuning == "qlora" and not torch.cuda.is_available():
        print("note: QLoRA on CPU uses bitsandbytes' CPU backend; it trains, slowly.", flush=True)
    dtype = models.pick_dtype(cfg)

    events.status("loading", 0, what="data")
    if stages.uses_pairs(cfg):  # preference / reward stages: prompt, chosen, rejected rows for trl
        train_rows, val_rows, report = stages.pair_rows(cfg)
    else:
        train_rows, val_rows, report = pipeline.build(cfg, tokenizer)
    events.write("data", 0, train_rows=report.train, val_rows=report.val, **report.as_event())
    if flag.set:
        events.status("stopped", 0, reason="stopped before training began")
        return 0

    # Built before the model: DeepSpeed ZeRO-3 must see its config while the weights load.
    args = training_args(cfg, run_dir, bool(val_rows), dtype, *stages.args_class(cfg))
    model = models.load_model(cfg, path)
    model.config.use_cache = False  # training builds no KV cache (and packing needs none)
    model = methods.apply(model, cfg, total_steps=stages.total_steps(cfg, len(train_rows)), run_dir=run_dir)
    if cfg.train.gradient_checkpointing and methods.is_adapter(model):
        model.enable_input_require_grads()
    trainable, total = methods.count_params(model)

    resolved = {
        "model_path": path, "dtype": str(dtype).replace("torch.", ""),
        "quantization": models.quantization_of(cfg),
        "device": "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "trainable_params": trainable, "total_params": total,
        "trainable_pct": round(100 * trainable / max(total, 1), 4),
        "effective_batch": cfg.train.batch_size * cfg.train.grad_accum * max(1, args.world_size),
        "train_rows": report.train, "val_rows": report.val, "chat_template": tokenizer.chat_template,
        "torch": torch.__version__, "world_size": args.world_size, "strategy": cfg.distributed.strategy,
    }
    if args.deepspeed and distributed.is_main():  # the exact DeepSpeed config, beside the run, for the record
        (run_dir / "deepspeed.json").write_text(json.dumps(args.deepspeed, indent=1, default=str))
    for k, v in resolved.items():
        if k != "chat_template" and distributed.is_main():
            print(f"resolved {k} = {v}", flush=True)
    events.write("resolved", 0, **{k: v for k, v in resolved.items() if k != "chat_template"})

    stopper = StopOnSignal(flag)
    collate, loss_func = stages.collator(cfg, tokenizer)
    trainer = stages.build_trainer(cfg, model, tokenizer, args, train_rows, val_rows,
                                   [EventsCallback(events, run_dir), stopper], collate, loss_func)
    ckpts = checkpoints(run_dir)
    resume_from = ckpts[-1] if ckpts else None
    if resume_from:
        print(f"resuming from {resume_from}", flush=True)
        events.status("loading", 0, what="resuming", checkpoint=Path(resume_from).name)
    trainer.train(resume_from_checkpoint=resume_from)
    step = trainer.state.global_step
    if stopper.stopped_at is not None:
        events.status("stopped", step, checkpoint=f"checkpoint-{step}",
                      reason="stopped by request; resume continues from this checkpoint")
        return 0
    if distributed.gathers_to_rank0_for_save(cfg):
        final = save_final_sharded(trainer, tokenizer, cfg, run_dir, resolved)
    elif distributed.is_main():
        final = save_final(trainer.model, tokenizer, cfg, run_dir, resolved)
    distributed.barrier()  # no rank exits before the output is whole
    if not distributed.is_main():
        return 0
    events.status("finished", step, output=str(final.relative_to(run_dir)), **telemetry.memory())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path, help="saves/<run>/config.yaml")
    a = ap.parse_args(argv)
    if not a.config.is_file():
        print(f"error: no config at {a.config}", file=sys.stderr)
        return 2
    return run(a.config)


if __name__ == "__main__":
    sys.exit(main())
