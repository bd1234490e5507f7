"""The grpo and ppo stages: trl 1.x's GRPOTrainer with Whetstone's rewards, its sample completions written
as `samples` events for the Train tab, and a policy that may start from an earlier run's adapter.

What runs (both stages; see engine.config.rl): for each prompt, method.rl.generations completions are
sampled; each is scored by the weighted reward functions; its advantage is its reward minus its group's
mean, over the group's spread; the policy follows PPO's clipped objective (method.rl.epsilon, over
method.rl.iterations passes per batch) plus beta x KL to the frozen reference (the starting policy). No
value network, no GAE: trl 1.x removed PPOTrainer. Heavy (torch, trl, peft)."""
from __future__ import annotations

from engine.config import RunConfig
from engine.runs.events import EventWriter

SAMPLE_EVERY = 5      # write the sample completions table every this many optimizer steps (and at the first)
SAMPLES_SHOWN = 8     # completions per samples event
SAMPLE_CHARS = 400    # each prompt / completion shortened to this many characters in the event


def args(cfg: RunConfig) -> tuple[type, dict]:
    """(trl's GRPOConfig, its fields for this run)."""
    from trl import GRPOConfig
    rl = cfg.method.rl
    return GRPOConfig, dict(
        num_generations=rl.generations, max_completion_length=rl.max_completion_length,
        temperature=rl.temperature, beta=rl.beta, epsilon=rl.epsilon, num_iterations=rl.iterations,
        loss_type="dapo",           # token-level average over the whole batch: no bias for short or long replies
        scale_rewards="group",      # advantage = (reward - group mean) / group std
        disable_dropout=True,       # the policy and its reference score the same tokens alike
        log_completions=False,      # the Train tab shows samples from our own events instead
        generation_kwargs={"use_cache": True},  # the worker turns the KV cache off for training; sampling needs it
    )


def start_policy(cfg: RunConfig, model):
    """The base model with method.rl.policy_run's adapter loaded to keep training (trl copies it as the frozen
    reference). Raises MethodError when that run cannot start the policy."""
    from peft import PeftModel

    from engine.config import rl as rl_config
    from engine.modeling.layers import MethodError
    from engine.runs.paths import saves_dir
    err = rl_config.policy_run_problem(cfg.method.rl.policy_run, cfg)
    if err:
        raise MethodError(f"method.rl.policy_run: {err}")
    run = rl_config.run_folder(cfg.method.rl.policy_run, saves_dir(cfg.output.saves_dir))
    print(f"policy: continuing the adapter of {run.name} ({run / 'adapter'})", flush=True)
    return PeftModel.from_pretrained(model, str(run / "adapter"), is_trainable=True)


def trainer_class(base: type) -> type:
    """A GRPOTrainer subclass that writes the latest sampled completions, with their rewards, as events."""

    class WhetstoneGRPO(base):
        samples_to: EventWriter | None = None  # set by build()

        def log(self, logs, start_time=None):
            super().log(logs, start_time)
            step = self.state.global_step
            if self.model.training and "loss" in logs and (step <= 1 or step % SAMPLE_EVERY == 0):
                self._write_samples(step)

        def _write_samples(self, step: int) -> None:
            if self.samples_to is None or not self.accelerator.is_main_process:
                return
            from engine.train.rewards import text_of
            prompts, completions = list(self._logs["prompt"]), list(self._logs["completion"])
            rewards = {name: list(v) for name, v in self._logs["rewards"].items()}
            weights = self.reward_weights.tolist()
            rows = []
            n_gen = max(1, self.num_generations)
            order = list(range(0, len(prompts), n_gen)) + [i for i in range(len(prompts)) if i % n_gen]
            for i in order[:SAMPLES_SHOWN]:  # one from each prompt first, then the rest
                per = {name: _num(vals[i]) for name, vals in rewards.items() if i < len(vals)}
                total = sum(w * v for w, v in zip(weights, per.values()) if v is not None)
                rows.append({"prompt": text_of(prompts[i])[:SAMPLE_CHARS],
                             "completion": text_of(completions[i])[:SAMPLE_CHARS],
                             "reward": round(total, 4), "rewards": per})
            if rows:
                self.samples_to.write("samples", step, rows=rows)

        def create_model_card(self, *a, **kw):
            pass  # trl writes a README.md into the checkpoints folder at every save; the run has its own card

    WhetstoneGRPO.__name__ = f"Whetstone{base.__name__}"
    return WhetstoneGRPO


def _num(v):
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return round(f, 4) if f == f else None


def build(T: type, cfg: RunConfig, train_rows, val_rows, kw: dict, events=None):
    """The trainer for a grpo / ppo run (kw: the model, arguments, tokenizer, callbacks, optimizers): rewards loaded (a bad reward file or reward model run fails here,
    before the first step), the prompts as a dataset, the reward names its metrics carry."""
    from datasets import Dataset

    from engine.train import rewards
    funcs, weights, toks, names = rewards.build(cfg)
    kw["args"].reward_weights = weights
    kw["args"].include_num_input_tokens_seen = "no"  # trl counts prompt + completion tokens itself
    trainer = T(reward_funcs=funcs, train_dataset=Dataset.from_list(train_rows),
                eval_dataset=Dataset.from_list(val_rows) if val_rows else None,
                reward_processing_classes=toks, **kw)
    trainer.reward_func_names = names  # rewards/<name>/mean: the names of engine.runs.metrics
    trainer.samples_to = events
    return trainer


def drop_reference(model) -> None:
    """Remove the frozen 'ref' adapter trl adds beside a continued adapter, so only the trained one is saved."""
    cfg = getattr(model, "peft_config", None)
    if isinstance(cfg, dict) and "ref" in cfg:
        model.delete_adapter("ref")

