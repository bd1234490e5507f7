"""In the browser: a user makes an identity dataset with the helper (name, maker, preview, save), sees how
long the run will train before Start, trains, and reads the report card in the Train tab. The real app and
worker on the tiny random Llama (the slow tests prove what the 135M model learns)."""
from __future__ import annotations

import json

import pytest

from test_webui_browser import (app, browser, go_to, models_dir, open_page, page, pick, run_status,  # noqa: F401
                                shot, the_only_run, wait_for)

pytestmark = pytest.mark.browser


@pytest.fixture
def uploads(tmp_path, monkeypatch):
    d = tmp_path / "uploads"
    monkeypatch.setenv("WHETSTONE_UPLOADS", str(d))  # before the app starts: it keeps uploads here
    return d


def test_a_user_makes_an_identity_set_trains_and_reads_the_report_card(uploads, app, page):  # noqa: F811
    open_page(page, app.url)
    pick(page, "Model", str(app.models / "tiny-llama"))
    go_to(page, "Dataset")
    page.get_by_text("Identity helper: give the assistant a name and a maker").click()
    page.get_by_label("Assistant name").fill("Aria")
    page.get_by_label("Made by").fill("Acme Labs")
    page.locator("#ws-identity-preview").click()
    table = page.locator("#ws-identity-table")
    wait_for(lambda: "Aria" in table.inner_text() and "Acme Labs" in table.inner_text(), "the preview", 20, page)
    assert "80 training rows and 10 held-out questions" in page.locator("#ws-identity-message").inner_text()
    page.get_by_label("Save as").fill("aria")
    page.locator("#ws-identity-save").click()
    message = page.locator("#ws-identity-message")
    wait_for(lambda: "Saved" in message.inner_text(), "the save", 20, page)
    assert (uploads / "aria.json").is_file() and (uploads / "aria_eval.json").is_file()
    shot(page, "20-identity-helper")

    go_to(page, "Hyperparameters")
    page.get_by_label("max steps", exact=True).fill("2")
    page.get_by_label("max steps", exact=True).press("Tab")
    page.wait_for_timeout(600)
    go_to(page, "Train")
    steps = page.locator(".ws-schedule").first
    wait_for(lambda: "80 + 40 general rows" in steps.inner_text(), "the schedule before Start", 20, page)
    assert "2 optimizer steps" in steps.inner_text()
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for(lambda: run_status(page) in ("starting", "loading", "running"), "the run to start", 30, page)
    run = the_only_run(app)
    written = json.loads(json.dumps(__import__("yaml").safe_load((run / "config.yaml").read_text())))
    assert written["data"]["datasets"] == [str(uploads / "aria.json")] and written["retain"]["method"] == "replay"

    wait_for(lambda: run_status(page) == "finished", "the run to finish", 600, page)
    card = page.locator(".ws-report")
    wait_for(lambda: "Report card" in card.inner_text(), "the report card", 30, page)
    text = card.inner_text()
    report = json.loads((run / "report.json").read_text())
    assert "Aria" in text and f"{report['hits_tuned']}/10" in text and f"{report['hits_base']}/10" in text
    assert report["rows"][0]["question"] in text and "Drift ratio" in text
    shot(page, "21-report-card")
