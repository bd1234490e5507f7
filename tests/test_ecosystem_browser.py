"""In a real browser, a user arriving from LLaMA-Factory loads their YAML with the button at the top: the tabs show
the converted settings and the page says what was left out; a key that changes training and has no equivalent is
named and nothing is loaded. In the Hyperparameters tab they tick TensorBoard and MLflow, and the config shows it."""
from __future__ import annotations

import pytest

from test_webui_browser import App, go_to, open_page, shot, wait_for  # noqa: F401  (fixtures below)
from test_webui_browser import app, browser, models_dir, page  # noqa: F401

pytestmark = pytest.mark.browser

THEIRS = """\
model_name_or_path: {model}
stage: sft
do_train: true
finetuning_type: lora
lora_rank: 24
lora_target: all
dataset: identity
template: chatml
cutoff_len: 256
preprocessing_num_workers: 16
output_dir: saves/tiny/lora/sft
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
learning_rate: 1.0e-4
num_train_epochs: 2.0
lr_scheduler_type: cosine
report_to: tensorboard
"""


def upload(page, path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator(".ws-load-file").click()
    chooser.value.set_files(str(path))


def test_their_yaml_loads_converted_and_trackers_are_ticked_in_hyperparameters(app, page, tmp_path, models_dir):
    theirs = tmp_path / "llama3_lora_sft.yaml"
    theirs.write_text(THEIRS.format(model=models_dir / "tiny-llama"))
    open_page(page, app.url)
    go_to(page, "Train")  # where the page's messages are shown
    upload(page, theirs)
    message = page.locator(".prose.ws-message")
    wait_for(lambda: "Loaded" in message.inner_text() or "not loaded" in message.inner_text(), "the upload", page=page)
    text = message.inner_text()
    assert "converted from a LLaMA-Factory config" in text and "preprocessing_num_workers: left out" in text, text
    assert "template 'chatml' -> 'chatml'" in text, text
    go_to(page, "Method")
    assert int(page.get_by_label("number input for LoRA rank").input_value()) == 24
    go_to(page, "Hyperparameters")
    assert page.get_by_label("batch size", exact=True).input_value() == "2"
    assert page.get_by_label("tensorboard", exact=True).is_checked()  # their report_to came along
    page.get_by_label("mlflow", exact=True).check()
    page.wait_for_timeout(800)
    shot(page, "hyperparams-trackers")
    go_to(page, "Train")
    page.get_by_text("Config as YAML and as a command line").click()
    page.wait_for_timeout(800)
    code = page.locator(".cm-content").last
    code.click()
    page.keyboard.press("Control+End")  # the editor draws the lines in view: bring train.report_to into it
    page.wait_for_timeout(500)
    yaml_view = code.inner_text()
    assert "report_to:" in yaml_view and "- tensorboard" in yaml_view and "- mlflow" in yaml_view, yaml_view

    bad = tmp_path / "bad.yaml"
    bad.write_text(THEIRS.format(model=models_dir / "tiny-llama") + "use_galore: true\n")
    page.get_by_text("Config as YAML and as a command line").click()  # fold it again
    upload(page, bad)
    wait_for(lambda: "bad.yaml not loaded" in message.inner_text(), "the refusal", page=page)
    assert "use_galore: not a key the converter knows" in message.inner_text()
