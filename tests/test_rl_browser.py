"""GRPO from the browser: a user picks the grpo stage and a built-in reward in the Method tab, starts, and
watches the Reward chart gain points and the table of sampled completions with their rewards fill in.
Runs the real app and the real training worker on the tiny random Llama."""
from __future__ import annotations

import pytest
import yaml

from test_webui_browser import (App, app, browser, go_to, models_dir, open_page, page, pick, run_status,  # noqa: F401
                                shot, the_only_run, wait_for)

pytestmark = pytest.mark.browser


def chart_points(page, chart: str, trace: str) -> int:
    plot = page.locator(f".ws-chart-{chart} .js-plotly-plot")
    if not plot.count() or not plot.is_visible():
        return 0
    return plot.evaluate(f"el => {{ const t = (el.data || []).find(t => t.name === {trace!r}); "
                         "return t ? t.y.filter(v => v !== null).length : 0; }")


def sample_rows(page) -> int:
    table = page.locator(".ws-samples")
    return table.locator("tbody tr").count() if table.count() and table.is_visible() else 0


def test_a_user_trains_grpo_with_a_builtin_reward_and_sees_rewards_and_samples(app: App, page):
    open_page(page, app.url)
    pick(page, "Model", str(app.models / "tiny-llama"))
    go_to(page, "Method")
    assert not page.get_by_label("reward: length (weight)", exact=True).is_visible()  # sft shows no RL fields
    pick(page, "stage", "grpo")
    weight = page.get_by_label("reward: length (weight)", exact=True)
    weight.fill("1")
    weight.press("Tab")
    target = page.get_by_label("length target (tokens)", exact=True)
    target.wait_for()
    target.fill("6")
    target.press("Tab")
    longest = page.get_by_label("max completion length", exact=True)
    longest.fill("12")
    longest.press("Tab")
    page.wait_for_timeout(600)
    shot(page, "rl-01-method")
    assert not page.locator(".ws-chart-reward").is_visible()  # a stage's own charts wait for its metrics

    go_to(page, "Hyperparameters")
    page.get_by_label("max steps", exact=True).fill("400")  # longer than the test waits: Stop ends it
    page.get_by_label("max steps", exact=True).press("Tab")
    page.wait_for_timeout(600)
    go_to(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for(lambda: run_status(page) in ("starting", "loading", "running"), "the run to start", 30, page)
    written = yaml.safe_load((the_only_run(app) / "config.yaml").read_text())
    assert written["method"]["stage"] == "grpo"
    assert written["method"]["rl"]["weight_length"] == 1.0 and written["method"]["rl"]["length_target"] == 6

    wait_for(lambda: chart_points(page, "reward", "mean reward") >= 1, "the reward chart's first point", 180, page)
    assert chart_points(page, "reward", "length") >= 1  # the reward function's own line
    wait_for(lambda: chart_points(page, "completion", "mean completion length") >= 1, "the length chart", 30, page)
    wait_for(lambda: sample_rows(page) >= 1, "the sample completions table", 30, page)
    text = page.locator(".ws-samples").inner_text()
    assert "length" in text  # each sample shows the reward each function gave it
    shot(page, "rl-02-training")
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for(lambda: run_status(page) == "stopped", "the run to stop", 120, page)
