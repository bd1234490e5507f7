"""In a real browser: a user who trained the quickstart opens Chat, loads the run, asks a held-out
identity question, watches "Wren" stream in while the base model beside it does not know the name,
unloads the model (its process ends), and exports the run from the Export tab.

Trains the real quickstart preset first (about 1.5 min on an idle 2-core machine). On a busy
machine, point WHETSTONE_QUICKSTART_RUN at a finished quickstart run folder to reuse it.
"""
from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from quickstart_run import quickstart_run
from test_webui_browser import App, go_to, open_page, shot, wait_for

pytestmark = [pytest.mark.browser, pytest.mark.slow]

HELD_OUT = "Could you tell me a bit about yourself and where you come from?"  # data/identity_eval.json row 0


@pytest.fixture(scope="module")
def quickstart_saves(tmp_path_factory) -> Path:
    saves = tmp_path_factory.mktemp("chat-browser") / "saves"
    quickstart_run(saves)
    return saves


@pytest.fixture
def chat_app(quickstart_saves, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    a = App(quickstart_saves, models).start()
    yield a
    a.stop()


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright
    from test_webui_browser import CHROMIUM, CHROMIUM_ARGS
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_chat_streams_the_new_name_base_does_not_know_it_and_unload_ends_the_worker(chat_app, browser):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    open_page(page, chat_app.url)
    go_to(page, "Chat")
    assert page.locator(".ws-chat-run input").input_value().startswith("quick")
    page.locator(".ws-chat-load").click()
    status = page.locator(".prose.ws-chat-status")
    wait_for(lambda: "Loaded:" in status.inner_text(), "the model to load", timeout=600, page=page)
    pid = int(re.search(r"pid (\d+)", status.inner_text()).group(1))
    assert pid_alive(pid)

    page.locator(".ws-chat-input textarea").fill(HELD_OUT)
    page.locator(".ws-chat-input textarea").press("Enter")
    tuned = page.locator(".ws-chat-tuned")
    seen: set[int] = set()
    deadline = time.time() + 600
    while time.time() < deadline and "base:" not in page.locator(".prose.ws-chat-stats").inner_text():
        seen.add(len(tuned.inner_text()))
        time.sleep(0.1)
    shot(page, "chat-side-by-side")
    tuned_text, base_text = tuned.inner_text(), page.locator(".ws-chat-basebox").inner_text()
    assert len(seen) >= 3, "the reply grew on screen piece by piece (streamed)"
    assert "Wren" in tuned_text, tuned_text
    assert HELD_OUT in base_text and "Wren" not in base_text, base_text
    assert "stopped by eos" in page.locator(".prose.ws-chat-stats").inner_text(), "replies end at <|im_end|>"

    page.locator(".ws-chat-unload").click()
    wait_for(lambda: "Unloaded" in status.inner_text(), "unload", timeout=60, page=page)
    wait_for(lambda: not pid_alive(pid), "the chat worker to exit", timeout=30)
    shot(page, "chat-unloaded")


def test_export_tab_writes_a_checked_merged_folder(chat_app, browser):
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    open_page(page, chat_app.url)
    go_to(page, "Export")
    assert page.locator(".ws-export-run input").input_value().startswith("quick")
    page.get_by_label("Replace an existing export").check()
    page.locator(".ws-export-go").click()
    report = page.locator(".prose.ws-export-report")
    wait_for(lambda: "Exported to" in report.inner_text() or "failed" in report.inner_text(), "the export",
             timeout=900, page=page)
    shot(page, "export-finished")
    text = report.inner_text()
    assert "Exported to" in text and "Merge check" in text and "Modelfile" in text, text
    assert (chat_app.saves / "quick" / "merged" / "config.json").is_file()


def test_chat_answers_with_a_gguf_file_in_llama_cpp_beside_its_merged_folder(chat_app, browser):
    """The quickstart's Q4_K_M GGUF (made by llama.cpp's quantizer) answers in the Chat tab through llama.cpp,
    streaming, stopping at its end-of-turn token; the merged folder it was exported into answers beside it."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by .ci/setup")
    from quickstart_export import exported_fp16_with_gguf
    from test_webui_browser import type_into
    folder, _ = exported_fp16_with_gguf()
    page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
    open_page(page, chat_app.url)
    go_to(page, "Chat")
    page.get_by_label("GGUF file (llama.cpp)").check()
    page.wait_for_timeout(500)
    type_into(page, "GGUF file", str(folder / "gguf" / "quick-q4_k_m.gguf"))
    page.locator(".ws-chat-load").click()
    status = page.locator(".prose.ws-chat-status")
    wait_for(lambda: "Loaded:" in status.inner_text() or "Could not" in status.inner_text(), "the GGUF to load",
             timeout=300, page=page)
    assert "cpu (llama.cpp)" in status.inner_text(), status.inner_text()
    page.locator(".ws-chat-input textarea").fill(HELD_OUT)
    page.locator(".ws-chat-input textarea").press("Enter")
    stats = page.locator(".prose.ws-chat-stats")
    wait_for(lambda: "base:" in stats.inner_text() or "Error" in stats.inner_text(), "both replies", timeout=600,
             page=page)
    shot(page, "chat-gguf-beside-merged")
    tuned, beside = page.locator(".ws-chat-tuned").inner_text(), page.locator(".ws-chat-basebox").inner_text()
    assert "Wren" in tuned and "Wren" in beside, (tuned, beside)
    assert "Merged folder (transformers)" in beside  # the second box says what answers in it
    assert "tuned:" in stats.inner_text() and "stopped by eos" in stats.inner_text().split("base:")[0]
    page.locator(".ws-chat-unload").click()
    wait_for(lambda: "Unloaded" in status.inner_text(), "unload", timeout=60, page=page)
