"""The queue in a real browser: a user starts a run, is offered Queue when Start is refused, queues a second
run, reloads the page and sees both; the app restarts between the two runs (its queue runner killed with
it); when the first run ends the second starts by itself, once, and the page follows it.

Runs the real app (`python app.py --port N`) and the real training worker on the tiny random Llama.
"""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from engine.runs import queue as Q
from engine.runs.events import read_all
from engine.runs.processes import pid_alive, proc_start_time
from engine.runs.queue_runner import RUNNER_FILE, RUNNER_LOG

pytestmark = pytest.mark.browser

browser_tests = pytest.importorskip("tests.test_webui_browser")  # skips, as that module does, without chromium
App, open_page, go_to, pick, wait_for, shot, run_status = (browser_tests.App, browser_tests.open_page,
                                                          browser_tests.go_to, browser_tests.pick,
                                                          browser_tests.wait_for, browser_tests.shot,
                                                          browser_tests.run_status)
app, browser, page, models_dir = browser_tests.app, browser_tests.browser, browser_tests.page, browser_tests.models_dir


def set_number(page, label: str, value: int) -> None:
    box = page.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Tab")
    page.wait_for_timeout(600)


def progress_text(page) -> str:
    return page.locator(".ws-progress").inner_text()


def queue_text(page) -> str:
    return page.locator(".ws-queue-table").inner_text()


def kill_runner(saves) -> None:
    """The queue's runner dies with the app (as if the machine's session ended): the next app must start one."""
    info = json.loads((Q.folder(saves) / RUNNER_FILE).read_text())
    pid = int(info["pid"])
    if pid_alive(pid) and proc_start_time(pid) == info["proc_start"]:
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not pid_alive(pid), "the runner to die", 10)


@pytest.fixture
def queue_emptied(app):
    """Whatever happens, waiting runs are cancelled so no runner lingers after the test."""
    yield
    for e in Q.read(app.saves).entries:
        try:
            Q.cancel(app.saves, e.name)
        except Q.QueueError:
            pass


def test_a_queued_run_survives_a_reload_and_an_app_restart_and_starts_when_the_first_ends(app, page, queue_emptied):
    open_page(page, app.url)
    pick(page, "Model", str(app.models / "tiny-llama"))
    go_to(page, "Hyperparameters")
    set_number(page, "max steps", 400)  # longer than the test waits: Stop ends it
    go_to(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for(lambda: run_status(page) in ("starting", "loading", "running"), "the first run to start", 180, page)
    first = progress_text(page).split()[1]

    # Start again while it runs: refused, and Queue is offered.
    page.get_by_role("button", name="Start", exact=True).click()
    message = page.locator(".prose.ws-message")
    wait_for(lambda: "press Queue" in message.inner_text(), "Start to offer Queue", 20, page)

    go_to(page, "Hyperparameters")
    set_number(page, "max steps", 3)
    go_to(page, "Train")
    page.get_by_text("Config as YAML and as a command line").click()
    wait_for(lambda: "train.max_steps=3" in page.locator(".cm-content").first.inner_text(),
             "the edit to reach the config", 20, page)
    page.get_by_role("button", name="Queue", exact=True).click()
    wait_for(lambda: "Queued" in message.inner_text(), "the run to be queued", 30, page)
    second = message.inner_text().split("Queued ", 1)[1].split(". ", 1)[0]
    assert second != first and "after the 1 run ahead of it" in message.inner_text()
    wait_for(lambda: second in queue_text(page), "the queue to list it", 10, page)
    assert "waiting" in queue_text(page)
    shot(page, "20-queued")

    open_page(page, app.url)  # a reload
    wait_for(lambda: run_status(page) == "running" and first in progress_text(page), "the reloaded page", 180, page)
    wait_for(lambda: second in queue_text(page), "the reloaded queue", 10, page)
    assert "waiting" in queue_text(page)
    shot(page, "21-reloaded-with-queue")

    app.stop()
    kill_runner(app.saves)
    assert not (app.saves / second).exists()
    app.start()
    open_page(page, app.url)
    wait_for(lambda: run_status(page) == "running" and first in progress_text(page), "the restarted app", 180, page)
    wait_for(lambda: second in queue_text(page), "the queue after the restart", 10, page)

    page.get_by_role("button", name="Stop", exact=True).click()  # the first run ends: the second's turn
    wait_for(lambda: second in progress_text(page), "the page to follow the second run", 300, page)
    shot(page, "22-second-started")
    wait_for(lambda: run_status(page) == "finished", "the second run to finish", 400, page)
    wait_for(lambda: second not in queue_text(page), "the queue to empty", 10, page)
    assert f"{second} started from the queue" in message.inner_text()

    events = read_all(app.saves / second / "events.jsonl")
    assert len([e for e in events if e.get("status") == "starting"]) == 1  # started once
    first_events = read_all(app.saves / first / "events.jsonl")
    assert first_events[-1]["status"] == "stopped" and events[0]["t"] >= first_events[-1]["t"]
    log = (Q.folder(app.saves) / RUNNER_LOG).read_text()
    assert log.count(f"started {second}") == 1 and log.count(f"started {first}") == 0  # Start, not the queue, ran it
    assert Q.read(app.saves).entries == []
