"""The one table of metrics: each name a worker writes in its train events, with its unit, its label and
the chart that draws it. The training worker writes these names; the live charts draw from this table,
so a new metric is one line here (plus the line that measures it).

Several processes: each rank reports its own memory; rank 0 writes the others' readings in its own
event under `<name>_rank<r>` (rank_key), and the charts draw one line per rank (split_rank).
"""
from __future__ import annotations

from dataclasses import dataclass

from engine.config.rl import REWARD_LABELS


@dataclass(frozen=True)
class Chart:
    name: str
    title: str
    y_title: str
    optional: bool = False  # shown only once a run logs one of its metrics (a stage's own charts)


@dataclass(frozen=True)
class Metric:
    name: str              # the key in a train event; its unit is part of the name (…_gib, …_per_s)
    label: str             # legend text
    chart: str = ""        # the chart that draws it ('' = kept in the events, not drawn)
    unit: str = ""
    per_rank: bool = False  # every process of a multi-process run reports its own


CHARTS = (
    Chart("loss", "Loss", "loss"),
    Chart("lr", "Learning rate", "lr"),
    Chart("throughput", "Throughput", "tokens / s"),
    Chart("memory", "Memory", "GiB"),
    # Drawn only for runs that log them: the preference / reward stages, then grpo / ppo.
    Chart("preference", "Preference rewards", "reward", optional=True),
    Chart("accuracy", "Preference accuracy", "share", optional=True),
    Chart("reward", "Reward", "reward", optional=True),
    Chart("kl", "KL to the reference", "KL", optional=True),
    Chart("completion", "Completion length", "tokens", optional=True),
    Chart("clip", "Clipped ratio", "share of tokens", optional=True),
)

METRICS = (
    Metric("loss", "loss", "loss"),
    Metric("lr", "lr", "lr"),
    Metric("grad_norm", "gradient norm"),
    Metric("tokens_per_s", "tokens/s", "throughput", "tokens/s"),
    Metric("vram_alloc_gib", "VRAM allocated", "memory", "GiB", per_rank=True),
    Metric("vram_reserved_gib", "VRAM reserved", "memory", "GiB", per_rank=True),
    Metric("vram_peak_gib", "VRAM peak", "", "GiB", per_rank=True),
    Metric("rss_gib", "process RSS", "memory", "GiB", per_rank=True),
    # dpo / simpo / orpo / kto (trl's implicit rewards) and rm (its scores on chosen vs rejected)
    Metric("rewards/chosen", "chosen", "preference"),
    Metric("rewards/rejected", "rejected", "preference"),
    Metric("rewards/margins", "margin (chosen - rejected)", "preference"),
    Metric("margin", "reward model margin", "preference"),
    Metric("rewards/accuracies", "chosen ranked first", "accuracy"),
    Metric("accuracy", "reward model accuracy", "accuracy"),
    # grpo / ppo: the weighted reward, its spread over the batch, and each reward function's mean
    Metric("reward", "mean reward", "reward"),
    Metric("reward_std", "reward spread (std)", "reward"),
    *(Metric(f"rewards/{name}/mean", label, "reward") for name, label in REWARD_LABELS.items()),
    *(Metric(f"rewards/{name}/std", f"{label} (spread)") for name, label in REWARD_LABELS.items()),
    Metric("kl", "KL to reference", "kl"),
    Metric("completions/mean_length", "mean completion length", "completion", "tokens"),
    Metric("completions/clipped_ratio", "cut at max length (share)", ""),
    Metric("clip_ratio/region_mean", "tokens clipped", "clip"),
    Metric("frac_reward_zero_std", "groups with equal rewards (share)", ""),
    Metric("entropy", "policy entropy", ""),
)

BY_NAME = {m.name: m for m in METRICS}
RANK_SEP = "_rank"


def on_chart(chart: str) -> list[Metric]:
    return [m for m in METRICS if m.chart == chart]


def rank_key(name: str, rank: int) -> str:
    """The key of rank `rank`'s reading in rank 0's event: rank 0 keeps the plain name."""
    return name if rank == 0 else f"{name}{RANK_SEP}{rank}"


def split_rank(key: str) -> tuple[str, int]:
    """(metric name, rank) of an event key: 'vram_alloc_gib_rank1' -> ('vram_alloc_gib', 1)."""
    name, sep, r = key.rpartition(RANK_SEP)
    if sep and r.isdigit() and name in BY_NAME and BY_NAME[name].per_rank:
        return name, int(r)
    return key, 0


def ranks(event: dict) -> list[int]:
    """The ranks whose readings an event carries (0 alone for a one-process run)."""
    found = {split_rank(k) for k in event}
    return sorted({r for name, r in found if name in BY_NAME and BY_NAME[name].per_rank})
