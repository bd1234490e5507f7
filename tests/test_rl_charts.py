"""The Train tab's view of a stage's own metrics: the reward, KL, completion-length and clip charts of a
grpo / ppo run and the preference charts of dpo / rm appear only for runs that log them; a metric logged on
some steps only is still one line; the latest sampled completions fill the samples table."""
from __future__ import annotations

from engine.runs.metrics import CHARTS, on_chart
from webui import charts, train
from webui.live import RunSeries

CHART = {c.name: c for c in CHARTS}


def grpo_events() -> list[dict]:
    out = []
    for step in (1, 2, 3, 4):
        e = {"t": 100.0 + step, "step": step, "kind": "train", "loss": 0.1, "lr": 1e-3, "kl": 0.01 * step,
             "clip_ratio/region_mean": 0.0}
        if step % 2:  # two passes per sampled batch: the rewards come with every other step
            e.update({"reward": 0.2 * step, "reward_std": 0.1, "rewards/length/mean": 0.3,
                      "completions/mean_length": 12.0})
        out.append(e)
    out.append({"t": 105.0, "step": 3, "kind": "samples", "rows": [
        {"prompt": "What is 2 + 2?", "completion": "2 + 2 = 4", "reward": 1.5, "rewards": {"length": 1.0}}]})
    return out


def test_a_grpo_run_shows_its_reward_charts_and_samples_but_no_preference_charts():
    series = RunSeries().add(grpo_events())
    shown = {c.name for c in CHARTS if not c.optional or charts.has_data(c, series)}
    assert {"reward", "kl", "completion", "clip"} <= shown and not {"preference", "accuracy"} & shown
    fig = charts.figure(CHART["reward"], series)
    lines = {t.name: t for t in fig.data}
    assert {"mean reward", "reward spread (std)", "length"} <= set(lines)
    assert lines["mean reward"].connectgaps  # steps 2 and 4 sampled nothing: the line goes on through them
    assert [v for v in lines["mean reward"].y if v is not None] == [0.2, 0.6000000000000001]
    assert train.sample_rows(series) == [[3, "What is 2 + 2?", "2 + 2 = 4", 1.5, "length 1.0"]]


def test_an_sft_run_shows_only_the_core_charts_and_no_samples():
    series = RunSeries().add([{"t": 1.0, "step": 1, "kind": "train", "loss": 1.0, "lr": 1e-3, "rss_gib": 1.0}])
    assert [c.name for c in CHARTS if not c.optional or charts.has_data(c, series)] == \
        ["loss", "lr", "throughput", "memory"]
    assert train.sample_rows(series) == []


def test_preference_runs_chart_their_rewards_margins_and_accuracy():
    series = RunSeries().add([{"t": 1.0, "step": 1, "kind": "train", "loss": 0.6, "rewards/chosen": 0.1,
                               "rewards/rejected": -0.1, "rewards/margins": 0.2, "rewards/accuracies": 0.75}])
    assert charts.has_data(CHART["preference"], series) and charts.has_data(CHART["accuracy"], series)
    assert {m.name for m in on_chart("preference")} >= {"rewards/chosen", "rewards/rejected", "rewards/margins"}
    names = {t.name for t in charts.figure(CHART["preference"], series).data}
    assert names == {"chosen", "rejected", "margin (chosen - rejected)"}
