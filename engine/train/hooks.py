"""Hooks into the Hugging Face Trainer: train / eval / status events (the metric names of
engine.runs.metrics), and a clean stop (checkpoint, then exit) on SIGTERM / SIGINT. Heavy."""
from __future__ import annotations

import contextlib
import signal
import time

from transformers import TrainerCallback

from engine.modeling import telemetry
from engine.runs.events import EventWriter
from engine.train import ranks as distributed


class StopRequested(Exception):
    """Raised by a stop signal inside `StopFlag.at_once()`: work that has nothing to save ends now."""


class StopFlag:
    """Set by SIGTERM / SIGINT; the training loop checks it after every optimizer step. Inside `at_once()`
    (the report card, after the weights are saved) a stop signal raises StopRequested instead, between two
    generated tokens: nothing there is worth waiting for."""

    def __init__(self):
        self.signal: int | None = None
        self._at_once = False

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum
        if self._at_once:
            self._at_once = False  # raised once, wherever the main thread is
            raise StopRequested

    @contextlib.contextmanager
    def at_once(self):
        if self.set:
            raise StopRequested
        self._at_once = True
        try:
            yield
        finally:
            self._at_once = False

    @property
    def set(self) -> bool:
        return self.signal is not None


class StopOnSignal(TrainerCallback):
    """On a stop signal: save a checkpoint at the current step, then end training."""

    def __init__(self, flag: StopFlag):
        self.flag = flag
        self.stopped_at: int | None = None

    def on_step_end(self, args, state, control, **kwargs):
        # Under several processes all ranks agree (one all-reduce), so they stop and save at one step.
        if self.stopped_at is None and distributed.any_rank(self.flag.set):
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        return control


class EventsCallback(TrainerCallback):
    """Writes train / eval / status events (DESIGN.md contract 4) from the Trainer's logs."""

    def __init__(self, events: EventWriter, run_dir):
        self.events = events
        self.run_dir = run_dir
        self._last_t: float | None = None
        self._last_tokens = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_t = time.time()
        self._last_tokens = state.num_input_tokens_seen or 0
        self.events.status("running", state.global_step, total_steps=state.max_steps,
                           epochs=args.num_train_epochs)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = logs or {}
        step = state.global_step
        if "loss" in logs:
            memory = distributed.gather_memory(telemetry.memory())  # every rank's, in rank 0's event
            now = time.time()
            tokens = state.num_input_tokens_seen or 0
            dt = max(now - (self._last_t or now), 1e-6)
            tps = (tokens - self._last_tokens) / dt if self._last_t else None
            self._last_t, self._last_tokens = now, tokens
            self.events.write("train", step, loss=float(logs["loss"]), lr=float(logs.get("learning_rate", 0.0)),
                              grad_norm=_f(logs.get("grad_norm")), epoch=_f(logs.get("epoch")),
                              tokens_per_s=round(tps, 1) if tps is not None else None, tokens_seen=tokens,
                              total_steps=state.max_steps, **stage_metrics(logs), **memory)
        if "eval_loss" in logs:
            self.events.write("eval", step, eval_loss=float(logs["eval_loss"]), epoch=_f(logs.get("epoch")),
                              **stage_metrics(logs, "eval_"))

    def on_save(self, args, state, control, **kwargs):
        self.events.status("checkpoint", state.global_step, checkpoint=f"checkpoint-{state.global_step}")
        self.events.status("running", state.global_step, total_steps=state.max_steps)


# Metrics the preference, reward and RL trainers (trl) log beside the loss; copied into the events as named.
STAGE_METRIC_PREFIXES = ("rewards/", "logps/")
STAGE_METRIC_NAMES = ("accuracy", "margin", "mean_reward", "nll_loss", "log_odds_ratio", "kl",
                      "reward", "reward_std", "frac_reward_zero_std", "entropy", "completions/mean_length",
                      "completions/clipped_ratio", "clip_ratio/region_mean")


def stage_metrics(logs: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in logs.items():
        if not k.startswith(prefix) or not isinstance(v, (int, float)):
            continue
        name = k[len(prefix):]
        if name.startswith(STAGE_METRIC_PREFIXES) or name in STAGE_METRIC_NAMES:
            out[(prefix + name) if prefix else name] = float(v)
    return out


def _f(v):
    return None if v is None else float(v)
