"""The Dataset tab in a real browser: a user sees the detected format, the token-length histogram with
the cutoff, and an example with its trained tokens highlighted; uploads a malformed file and reads
the precise error; uploads a good one and it joins the run's datasets.

Screenshots land in tests/screenshots/ (git-ignored)."""
from __future__ import annotations

import json

import pytest

from test_webui_browser import App, browser, go_to, models_dir, open_page, page, shot, wait_for  # noqa: F401

pytestmark = pytest.mark.browser


@pytest.fixture
def data_app(tmp_path, models_dir, monkeypatch):  # noqa: F811
    monkeypatch.setenv("WHETSTONE_UPLOADS", str(tmp_path / "uploads"))
    saves = tmp_path / "saves"
    saves.mkdir()
    a = App(saves, models_dir).start()
    yield a
    a.stop()


def upload(page, path) -> None:  # noqa: F811
    with page.expect_file_chooser() as chooser:
        page.locator("#ws-data-upload").get_by_text("Click to Upload").click()
    chooser.value.set_files(str(path))


def summary(page) -> str:  # noqa: F811
    return page.locator("#ws-data-summary").inner_text()


def test_dataset_tab_shows_histogram_example_and_upload_errors(data_app, page, tmp_path):  # noqa: F811
    open_page(page, data_app.url)
    go_to(page, "Dataset")
    wait_for(lambda: "alpaca" in summary(page), "the identity preview", 60, page)
    assert "92 rows" in summary(page)
    hist = page.locator("#ws-data-hist .js-plotly-plot")
    hist.wait_for()
    assert "over the cutoff" in hist.inner_text()
    example = page.locator("#ws-data-example")
    assert example.locator("span.trained").count() > 5 and example.locator("span.masked").count() > 5
    assert "trained (loss)" in example.inner_text()
    shot(page, "data-01-preview")

    # the cutoff moves: the histogram and the example follow
    cutoff = page.get_by_label("cutoff len", exact=True)
    cutoff.fill("40")
    cutoff.press("Enter")
    wait_for(lambda: example.locator("span.cut").count() > 0, "tokens past the cutoff struck out", 30, page)
    assert "cut by cutoff_len=40" in example.inner_text()
    shot(page, "data-02-cutoff")

    bad = tmp_path / "broken.jsonl"
    bad.write_text("\n".join([json.dumps({"instruction": "q", "output": "a"})] * 2 + ['{"instruction": "q",']) + "\n")
    upload(page, bad)
    wait_for(lambda: "Cannot use this dataset" in summary(page), "the upload error", 30, page)
    assert "broken.jsonl: line 3 is not valid JSON" in summary(page)
    shot(page, "data-03-bad-upload")

    good = tmp_path / "my_chats.jsonl"
    good.write_text(json.dumps({"conversations": [{"from": "human", "value": "Hi"},
                                                  {"from": "gpt", "value": "Hello there"}]}) + "\n")
    page.locator("#ws-data-upload button[aria-label='Clear']").first.click()
    upload(page, good)
    wait_for(lambda: "sharegpt" in summary(page), "the uploaded sharegpt preview", 30, page)
    assert (tmp_path / "uploads" / "my_chats.jsonl").is_file()
    assert "my_chats.jsonl" in page.locator(".cfg-field").filter(has_text="Datasets").first.inner_text()
    shot(page, "data-04-good-upload")
