"""The training worker, top to bottom: `python -m engine.train --config saves/<run>/config.yaml`.

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
import sys
import time
import traceback
from pathlib import Path

from engine import config as C
from engine.runs.events import EVENTS_FILE, EventWriter
from engine.runs.failures import explain
from engine.runs.processes import WORKER_FILE, proc_start_time, write_worker_file
from engine.runs import integrity
from engine.train import ranks as distributed


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


def announce(run_dir: Path) -> None:
    """Name this process in the run's worker.json. Stop signals the process group: this worker's own, or
    that of torchrun (its parent) with every rank in it; never a group that merely contains us (a test
    runner, a shell script). Under torchrun the file also names torchrun ("launcher"): the run is over
    when it, and so every rank, has exited."""
    pgid, under_torchrun = os.getpgid(0), "TORCHELASTIC_RUN_ID" in os.environ
    leader = under_torchrun and pgid == os.getppid()
    info = {"pid": os.getpid(), "pgid": pgid if pgid == os.getpid() or leader else None,
            "proc_start": proc_start_time(os.getpid()), "started": time.time(), "cmd": sys.argv,
            "world_size": distributed.world_size()}
    if leader:
        info["launcher"] = {"pid": pgid, "proc_start": proc_start_time(pgid)}
    write_worker_file(run_dir / WORKER_FILE, info)


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
        announce(run_dir)
    from engine.train.hooks import StopFlag
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
        try:  # the events first: on a full disk stdout.log may not take the traceback
            events.error(message, traceback=tb[-4000:], exception=type(e).__name__)
            events.status("failed", 0, reason=message)
        finally:
            try:
                print(tb, file=sys.stderr)
            except OSError:
                pass
        return 1
    finally:
        events.close()


class CheckpointsDamaged(RuntimeError):
    """Every checkpoint of the run is damaged: the message names each damaged file."""


def resume_from_whole_checkpoint(run_dir: Path, events: EventWriter) -> integrity.ResumePoint:
    """The newest whole checkpoint to resume from. Damaged newer ones (truncated by a bad copy or a disk fault)
    are skipped with a warning event that names their files, and moved aside (checkpoints/damaged-<name>);
    when checkpoints exist but none is whole, the run fails, naming them."""
    point = integrity.resume_point(run_dir)
    if not point.skipped:
        return point
    if point.checkpoint is None:
        raise CheckpointsDamaged(point.failure())
    note = point.note()
    print(f"warning: {note}", file=sys.stderr, flush=True)
    if distributed.is_main():
        events.write("warning", 0, message=note + " (moved aside to checkpoints/damaged-*)",
                     damaged=[name for name, _ in point.skipped])
        for name, _ in point.skipped:
            integrity.set_aside(run_dir / "checkpoints" / name)
    return point


def train(cfg: C.RunConfig, run_dir: Path, events: EventWriter, flag) -> int:
    import torch
    from transformers import set_seed

    from engine.data import pairs, pipeline, prompts, templates
    from engine.modeling import adapters as methods
    from engine.modeling import load as models
    from engine.modeling import telemetry
    from engine.preflight import schedule
    from engine.train import retain, stages
    from engine.train.args import training_args
    from engine.train.hooks import EventsCallback, StopOnSignal
    from engine.train.output import save_final

    set_seed(cfg.train.seed)
    point = resume_from_whole_checkpoint(run_dir, events)  # before any loading: a run that cannot resume says so
    if cfg.train.report_to and distributed.is_main():  # the trackers write inside the run folder
        from engine.runs import trackers
        os.environ.update(trackers.environment(run_dir, cfg.train.report_to))
    distributed.prepare_rank()
    if distributed.is_main() and (note := distributed.mismatch_note(cfg)):
        print(note, file=sys.stderr, flush=True)
    events.status("loading", 0, what="tokenizer and model")
    path = models.resolve_path(cfg.model.name_or_path)
    tokenizer = models.load_tokenizer(cfg, path)
    templates.apply(tokenizer, cfg.data.template, cfg.data.system)
    if cfg.method.finetuning == "qlora" and not torch.cuda.is_available():
        print("note: QLoRA on CPU uses bitsandbytes' CPU backend; it trains, slowly.", flush=True)
    dtype = models.pick_dtype(cfg)

    events.status("loading", 0, what="data")
    if stages.uses_pairs(cfg):  # preference / reward stages: prompt, chosen, rejected rows for trl
        train_rows, val_rows, report = pairs.build(cfg)
    elif stages.uses_prompts(cfg):  # grpo / ppo: prompts and reference answers to sample completions for
        train_rows, val_rows, report = prompts.build(cfg)
    else:
        train_rows, val_rows, report = pipeline.build(cfg, tokenizer)
    general = retain.Plan() if stages.uses_pairs(cfg) or stages.uses_prompts(cfg) else retain.plan(cfg, tokenizer, len(train_rows))
    events.write("data", 0, train_rows=report.train, val_rows=report.val, general_rows=general.n, **report.as_event())
    samples = len(train_rows) * (cfg.method.rl.generations if stages.uses_prompts(cfg) else 1)  # grpo: completions
    sched = schedule.resolve(cfg.train, samples + general.n, max(1, distributed.world_size()),
                             general_rows=general.n)
    if distributed.is_main():
        print(sched.describe(), flush=True)
        print(retain.describe(general, cfg), flush=True)
    if flag.set:
        events.status("stopped", 0, reason="stopped before training began")
        return 0

    # Built before the model: DeepSpeed ZeRO-3 must see its config while the weights load.
    args = training_args(cfg, run_dir, bool(val_rows), dtype, *stages.args_class(cfg), schedule=sched)
    model = models.load_model(cfg, path)
    if general.n:  # replay: the base model answers its general prompts before any adapter exists
        events.status("loading", 0, what=f"general rows ({general.n})")
        train_rows = train_rows + retain.examples(general, cfg, model, tokenizer, path)
    model.config.use_cache = False  # training builds no KV cache (and packing needs none)
    from engine.modeling import liger
    kernels = liger.apply(model, cfg)  # fused RMSNorm / RoPE / SwiGLU on CUDA, before adapters wrap the layers
    if stages.uses_prompts(cfg) and cfg.method.rl.policy_run.strip():  # RLHF: the sft run's adapter goes on
        from engine.train.rl import start_policy
        model = start_policy(cfg, model)
    else:
        model = methods.apply(model, cfg, total_steps=sched.total_steps, run_dir=run_dir, tokenizer=tokenizer)
    if cfg.train.gradient_checkpointing and methods.is_adapter(model):
        model.enable_input_require_grads()
    trainable, total = methods.count_params(model)
    collate, loss_func = stages.collator(cfg, tokenizer, dtype, model)  # may fuse the head into the loss
    fused = type(loss_func).__name__ == "FusedHeadLoss"

    resolved = {
        "model_path": path, "dtype": str(dtype).replace("torch.", ""),
        "quantization": C.quantization(cfg),
        "device": "cuda:" + torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "trainable_params": trainable, "total_params": total,
        "trainable_pct": round(100 * trainable / max(total, 1), 4),
        "effective_batch": cfg.train.batch_size * cfg.train.grad_accum * max(1, args.world_size),
        "train_rows": report.train, "val_rows": report.val, "chat_template": tokenizer.chat_template,
        "torch": torch.__version__, "world_size": args.world_size, "strategy": cfg.distributed.strategy,
        "attention": getattr(model.config, "_attn_implementation", None), "packing": collate.packed,
        "liger": " ".join(kernels + ["fused_linear_cross_entropy"] * fused) or "off",
        "epochs": sched.epochs, "total_steps": sched.total_steps, "warmup_steps": sched.warmup_steps,
        "steps_per_epoch": sched.steps_per_epoch, "schedule_rule": sched.rule, "general_rows": general.n,
    }
    if args.deepspeed and distributed.is_main():  # the exact DeepSpeed config, beside the run, for the record
        (run_dir / "deepspeed.json").write_text(json.dumps(args.deepspeed, indent=1, default=str))
    for k, v in resolved.items():
        if k != "chat_template" and distributed.is_main():
            print(f"resolved {k} = {v}", flush=True)
    events.write("resolved", 0, **{k: v for k, v in resolved.items() if k != "chat_template"})

    stopper = StopOnSignal(flag)
    trainer = stages.build_trainer(cfg, model, tokenizer, args, train_rows, val_rows,
                                   [EventsCallback(events, run_dir), stopper], collate, loss_func, events)
    resume_from = str(point.checkpoint) if point.checkpoint else None
    if resume_from:
        print(f"resuming from {resume_from}", flush=True)
        events.status("loading", 0, what="resuming", checkpoint=point.checkpoint.name,
                      skipped=[name for name, _ in point.skipped])
    trainer.train(resume_from_checkpoint=resume_from)
    step = trainer.state.global_step
    if stopper.stopped_at is not None:
        events.status("stopped", step, checkpoint=f"checkpoint-{step}",
                      reason="stopped by request; resume continues from this checkpoint")
        return 0
    if stages.uses_prompts(cfg):
        from engine.train.rl import drop_reference
        drop_reference(trainer.model)  # the frozen copy trl keeps beside a continued adapter is not the output
    final = save_final(trainer, tokenizer, cfg, run_dir, resolved)
    distributed.barrier()  # no rank exits before the output is whole
    if not distributed.is_main():
        return 0
    if distributed.world_size() <= 1:
        report_card(cfg, trainer.model, tokenizer, path, run_dir, events, step, flag)
    events.status("finished", step, output=str(final.relative_to(run_dir)), **telemetry.memory())
    return 0


def report_card(cfg: C.RunConfig, model, tokenizer, base_path: str, run_dir: Path, events: EventWriter,
                step: int, flag) -> None:
    """Answer the held-out questions (tuned and base) and measure drift: report.json and a `report` event. The
    weights are already saved, so a failure here is reported on the card and never fails the run; Stop (or
    Ctrl-C) while it answers ends it between two tokens, the card saying it was skipped."""
    from engine.data import held_out
    from engine.evaluate import report_card as card
    from engine.modeling.stop_tokens import stop_token_ids
    from engine.train.hooks import StopRequested
    name = held_out.source(cfg)
    if name is None:
        return
    try:
        with flag.at_once():
            events.status("running", step, what="report card", held_out=name)
            print(f"report card: answering the held-out questions of {name} (tuned and base)", flush=True)
            card.write(cfg, model, tokenizer, base_path, run_dir, events, step, stop_token_ids(tokenizer))
    except StopRequested:
        print("report card skipped: stopped by request (the trained weights are saved)", flush=True)
        events.write("report", step, error="the report card was skipped: the run was stopped while it answered "
                                           "(the trained weights are saved)")
    except Exception as e:  # noqa: BLE001  (the run itself succeeded)
        traceback.print_exc()
        events.write("report", step, error=f"the report card could not be made: {type(e).__name__}: {e}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.train", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path, help="saves/<run>/config.yaml")
    a = ap.parse_args(argv)
    if not a.config.is_file():
        print(f"error: no config at {a.config}", file=sys.stderr)
        return 2
    return run(a.config)

