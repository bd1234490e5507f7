"""The workbench in a real browser: a user picks a model and a dataset, sets the LoRA rank with the
slider, starts training, watches the loss chart gain points, stops, and finds the run again after a
reload, from a second browser and after an app restart.

Runs the real app (`python app.py --port N`) and the real training worker on a tiny random Llama.
Screenshots land in tests/screenshots/ (git-ignored).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest
import yaml

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "tests" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

playwright_sync = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """The workbench served by `python app.py` in a subprocess, with its own saves and models folders."""

    def __init__(self, saves: Path, models: Path):
        self.saves, self.models = saves, models
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> "App":
        """Serve and wait until it answers. Gradio's own check that it can reach itself gives up after one
        3-second request, which a starved machine can miss (the app then exits): such a start is tried again."""
        for attempt in range(3):
            if self._start(retry=attempt < 2):
                return self
        raise AssertionError("unreachable")

    def _start(self, retry: bool) -> bool:
        port = free_port()
        env = dict(os.environ, WHETSTONE_SAVES=str(self.saves), WHETSTONE_MODELS_DIR=str(self.models),
                   GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1",
                   PYTHONUNBUFFERED="1")
        self.log = open(self.saves.parent / f"app-{port}.log", "w")
        self.proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        self.url = f"http://127.0.0.1:{port}/"
        deadline = time.time() + 180  # a starved machine (load 30 on 2 cores) has taken over 90 s
        while time.time() < deadline:
            if self.proc.poll() is not None:
                text = (self.saves.parent / f"app-{port}.log").read_text()
                if retry and "localhost is not accessible" in text:
                    self.log.close()
                    return False
                raise AssertionError(text)
            try:
                urllib.request.urlopen(self.url, timeout=2)
                return True
            except OSError:
                time.sleep(0.5)
        raise AssertionError("the app did not come up in 180 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        # An event handler that raised left the user's edit or click undone with nothing said in the page:
        # every browser test also proves that none did.
        text = Path(self.log.name).read_text(errors="replace")
        assert "Traceback" not in text, "an event handler in the app raised:\n" + text[-4000:]


@pytest.fixture
def models_dir(tmp_path, tiny_model_dir) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    (d / "tiny-llama").symlink_to(tiny_model_dir)
    return d


def _serve(saves: Path, models: Path) -> Iterator[App]:
    a = App(saves, models).start()
    yield a
    a.stop()
    from engine.runs import launcher
    for run in saves.iterdir():  # never leave a worker behind
        if run.is_dir():
            launcher.stop(run, grace_s=5, wait=True)


@pytest.fixture
def app(tmp_path, models_dir) -> Iterator[App]:
    saves = tmp_path / "saves"
    saves.mkdir()
    yield from _serve(saves, models_dir)


def damaged_past_run(saves: Path, model: Path) -> Path:
    """An older run, there before the app starts: it failed, and its one checkpoint was cut short (a bad copy)."""
    from engine import config as C
    from engine.runs.events import EventWriter
    run = saves / "older-run"
    ck = run / "checkpoints" / "checkpoint-2"
    ck.mkdir(parents=True)
    C.save(C.replace(C.replace(C.RunConfig(), "output.run_name", run.name), "model.name_or_path", str(model)),
           run / "config.yaml")
    header = json.dumps({"w": {"dtype": "F32", "shape": [1000], "data_offsets": [0, 4000]}}).encode()
    (ck / "adapter_model.safetensors").write_bytes(len(header).to_bytes(8, "little") + header + b"\0" * 100)
    (ck / "adapter_config.json").write_text("{}")
    (ck / "trainer_state.json").write_text('{"global_step": 2}')
    w = EventWriter(run / "events.jsonl")
    w.status("starting", 0)
    w.status("failed", 2, reason="killed")
    w.close()
    return run


@pytest.fixture
def app_with_past_run(tmp_path, models_dir, tiny_model_dir) -> Iterator[App]:
    saves = tmp_path / "saves"
    saves.mkdir()
    damaged_past_run(saves, tiny_model_dir)
    time.sleep(1.1)  # runs are listed newest first, by their first event's time
    yield from _serve(saves, models_dir)


@pytest.fixture(scope="module")
def browser():
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    yield pg
    ctx.close()


# ---------------------------------------------------------------------------------------------
# What a user does and sees
# ---------------------------------------------------------------------------------------------

def open_page(page, url: str) -> None:
    page.goto(url)
    page.get_by_label("Model", exact=True).wait_for()
    page.wait_for_timeout(1500)  # the page's load event fills in the session's state


def pick(page, label: str, option: str) -> None:
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(400)


def type_into(page, label: str, text: str) -> None:
    """Type a value that is not in a dropdown's list (a path, a hub id) and commit it with Enter."""
    box = page.get_by_label(label, exact=True)
    box.click()
    box.fill(text)
    box.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_timeout(600)


def go_to(page, tab: str) -> None:
    page.get_by_role("tab", name=tab).click()
    page.wait_for_timeout(300)


def run_status(page) -> str | None:
    return page.locator(".ws-progress").get_attribute("data-status")


def loss_points(page) -> int:
    """How many raw loss points the live loss chart holds."""
    return page.locator(".ws-chart-loss .js-plotly-plot").evaluate(
        "el => { const t = (el.data || []).find(t => t.name === 'loss'); return t ? t.x.length : 0; }")


def wait_for(check, what: str, timeout: float = 120.0, page=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    if page is not None:
        page.screenshot(path=str(SHOTS / f"timeout-{what.replace(' ', '-')}.png"), full_page=True)
    raise AssertionError(f"timed out waiting for {what}")


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def runs_table_text(page) -> str:
    return page.locator(".ws-runs").inner_text()


def the_only_run(app: App, besides: tuple[str, ...] = ()) -> Path:
    runs = [p for p in app.saves.iterdir() if p.is_dir() and not p.name.startswith(".") and p.name not in besides]
    assert len(runs) == 1, runs
    return runs[0]


# ---------------------------------------------------------------------------------------------
# Stories
# ---------------------------------------------------------------------------------------------

def test_a_user_trains_watches_the_loss_stops_and_finds_the_run_again(app_with_past_run, page, browser):
    """An older run (failed, its checkpoint damaged) is there when the app starts; the user trains a new one."""
    app = app_with_past_run
    open_page(page, app.url)
    shot(page, "01-opened")
    pick(page, "Model", str(app.models / "tiny-llama"))

    go_to(page, "Dataset")
    pick(page, "Datasets", "alpaca_demo")
    shot(page, "02-dataset")

    go_to(page, "Method")
    rank_before = int(page.get_by_label("number input for LoRA rank").input_value())
    slider = page.get_by_label("range slider for LoRA rank")
    slider.focus()
    for _ in range(4):
        slider.press("ArrowLeft")
    page.wait_for_timeout(800)
    rank = rank_before - 4
    assert int(page.get_by_label("number input for LoRA rank").input_value()) == rank
    shot(page, "03-method")

    go_to(page, "Hyperparameters")
    max_steps = page.get_by_label("max steps", exact=True)
    max_steps.fill("400")  # longer than the test waits: Stop, not the end, finishes it
    max_steps.press("Tab")
    page.wait_for_timeout(600)

    go_to(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for(lambda: run_status(page) in ("starting", "loading", "running"), "the run to start", 90, page)
    run_dir = the_only_run(app, besides=("older-run",))
    written = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert written["model"]["name_or_path"] == str(app.models / "tiny-llama")
    assert written["data"]["datasets"] == ["identity", "alpaca_demo"]
    assert written["method"]["lora"]["rank"] == rank
    assert written["train"]["max_steps"] == 400

    first = wait_for(lambda: loss_points(page), "the first loss point", 120, page)
    wait_for(lambda: loss_points(page) >= first + 2, "the loss chart to gain points", 60, page)
    assert run_status(page) == "running"
    shot(page, "04-training")

    # A second browser opens the page while the run is going: it is re-attached to it.
    ctx2 = browser.new_context(viewport={"width": 1400, "height": 1000})
    other = ctx2.new_page()
    open_page(other, app.url)
    wait_for(lambda: run_status(other) == "running", "the second browser to see the run", 20, other)
    assert run_dir.name in other.locator(".ws-progress").inner_text()
    wait_for(lambda: loss_points(other) >= first, "the second browser's loss chart", 20, other)
    shot(other, "05-second-browser")
    ctx2.close()

    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for(lambda: run_status(page) == "stopped", "the run to stop", 90, page)
    wait_for(lambda: "stopped" in runs_table_text(page), "the runs list to say stopped", 10, page)
    assert run_dir.name in runs_table_text(page)
    shot(page, "06-stopped")
    points = loss_points(page)

    page.reload()
    page.get_by_label("Model", exact=True).wait_for()
    go_to(page, "Train")
    wait_for(lambda: run_status(page) == "stopped", "the reloaded page to show the run", 20, page)
    assert run_dir.name in runs_table_text(page) and "stopped" in runs_table_text(page)
    assert loss_points(page) == points
    shot(page, "07-reloaded")

    # Chat and Export offer the run just trained (its stop checkpoint), not the older run the page showed
    # when it loaded: a default is not a choice.
    for tab, field in (("Chat", ".ws-chat-run input"), ("Export", ".ws-export-run input")):
        go_to(page, tab)
        wait_for(lambda: page.locator(field).input_value().startswith(run_dir.name), f"{tab} to offer the run",
                 20, page)
    # The older run picked on purpose: its damaged weights are named, in words, before any loading.
    go_to(page, "Chat")
    page.locator(".ws-chat-run input").click()
    page.get_by_role("option", name="older-run · lora · failed (checkpoints only)", exact=True).click()
    page.keyboard.press("Escape")
    page.wait_for_timeout(400)
    page.locator(".ws-chat-load").click()
    status = page.locator(".prose.ws-chat-status")
    wait_for(lambda: "Could not load" in status.inner_text(), "the damaged checkpoint to be named", 20, page)
    said = status.inner_text()
    assert "older-run's checkpoint-2 is damaged (adapter_model.safetensors truncated" in said, said
    assert "SafetensorError" not in said
    go_to(page, "Export")  # the user's pick in Chat is theirs there; Export still offers the run just trained
    assert page.locator(".ws-export-run input").input_value().startswith(run_dir.name)
    shot(page, "07b-chat-damaged")


def test_an_app_restart_during_a_run_finds_it_still_running(app, page):
    open_page(page, app.url)
    pick(page, "Model", str(app.models / "tiny-llama"))
    go_to(page, "Hyperparameters")
    page.get_by_label("max steps", exact=True).fill("400")
    page.get_by_label("max steps", exact=True).press("Tab")
    page.wait_for_timeout(500)
    go_to(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for(lambda: loss_points(page) >= 1, "the first loss point", 120, page)
    run_dir = the_only_run(app)

    app.stop()  # the app goes away; the worker, in its own process group, keeps training
    app.start()
    open_page(page, app.url)
    # re-attached: the Train tab opens by itself on the running run
    wait_for(lambda: run_status(page) == "running", "the restarted app to find the run", 20, page)
    assert run_dir.name in page.locator(".ws-progress").inner_text()
    before = loss_points(page)
    wait_for(lambda: loss_points(page) > before, "new points after the restart", 60, page)
    shot(page, "08-after-restart")
    page.get_by_role("button", name="Stop", exact=True).click()
    wait_for(lambda: run_status(page) == "stopped", "the run to stop", 90, page)


def test_start_refuses_bad_rows_and_names_them(app, page, tmp_path):
    """Start checks the rows first (as the CLI does): nothing is launched, the message names file and row."""
    bad = tmp_path / "rows.json"
    bad.write_text(json.dumps([{"instruction": "Who are you?", "output": "Wren."}, {"instruction": "Name?"}]))
    open_page(page, app.url)
    pick(page, "Model", str(app.models / "tiny-llama"))
    go_to(page, "Dataset")
    type_into(page, "Datasets", str(bad))
    go_to(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    message = page.locator(".prose.ws-message")
    wait_for(lambda: "Not started" in message.inner_text(), "the refusal", 60, page)
    text = message.inner_text()
    assert "rows.json" in text and "row 2" in text and "output" in text, text  # file, row and field, in words
    assert not [p for p in app.saves.iterdir() if not p.name.startswith(".")], "no run folder for a run that cannot train"
    shot(page, "09-refused-bad-rows")


def test_a_run_that_fails_says_why_in_plain_words(app, page, tmp_path, tiny_model_dir):
    """A failure only the worker can find (weights that do not load) ends the run as failed, in words."""
    import shutil
    broken = app.models / "broken-llama"
    broken.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.suffix != ".safetensors":
            shutil.copy(f, broken / f.name)
    (broken / "model.safetensors").write_bytes(b"\x00not a safetensors file" * 10)
    open_page(page, app.url)
    type_into(page, "Model", str(broken))  # as a user pastes a folder path
    go_to(page, "Train")
    page.get_by_role("button", name="Start", exact=True).click()
    wait_for(lambda: run_status(page) == "failed", "the run to fail", 120, page)
    failure = page.locator(".prose.ws-failure")
    wait_for(lambda: "The run failed." in failure.inner_text(), "the failure reason", 10, page)
    text = failure.inner_text()
    assert "Traceback" not in text.split("Technical details")[0]  # words first, the traceback folded away
    assert "Could not load" in text and "broken-llama" in text and "damaged" in text, text  # what, and why
    wait_for(lambda: "failed" in runs_table_text(page), "the runs list to say failed", 10, page)
    shot(page, "10-failed")


def test_switching_method_shows_only_the_settings_that_apply(app, page):
    open_page(page, app.url)
    go_to(page, "Method")
    rank = page.get_by_label("range slider for LoRA rank")
    assert rank.is_visible()
    assert not page.get_by_label("trainable layers", exact=True).is_visible()
    page.get_by_label("freeze", exact=True).check()
    page.wait_for_timeout(800)
    assert not rank.is_visible()
    assert page.get_by_label("trainable layers", exact=True).is_visible()
    shot(page, "11-freeze")
    go_to(page, "Train")
    page.get_by_text("Config as YAML and as a command line").click()
    page.wait_for_timeout(500)
    cli = page.locator(".cm-content").first.inner_text()
    assert "python app.py train presets/quickstart.yaml" in cli and "method.finetuning=freeze" in cli

    page.get_by_role("button", name="Load preset").click()  # quickstart again: LoRA, its settings back
    page.wait_for_timeout(1000)
    assert "method.finetuning" not in page.locator(".cm-content").first.inner_text()
    go_to(page, "Method")
    assert page.get_by_label("range slider for LoRA rank").is_visible()
    assert page.get_by_label("number input for LoRA rank").input_value() == "16"

    # P-Tuning v2: its layer choice and reparameterisation show; the encoder width only once an encoder is on
    page.get_by_label("ptuning_v2", exact=True).check()
    # (the field's accessible name carries its help text after the merge: matched by its start, not exactly)
    page.get_by_label("prompted layers").first.wait_for(state="visible", timeout=15_000)  # after the update
    assert not rank.is_visible()
    assert not page.get_by_label("projection hidden size").first.is_visible()
    pick(page, "P-Tuning v2 reparameterisation", "lstm")
    page.get_by_label("projection hidden size").first.wait_for(state="visible", timeout=15_000)
    assert "ptuning_v2 (chosen)" in page.locator(".ws-method-table").inner_text()


def finished_run(saves: Path, name: str, losses: list[float]) -> None:
    """A run folder as the worker leaves it, written with the worker's own event writer."""
    from engine import config as C
    from engine.runs.events import EventWriter
    run = saves / name
    run.mkdir(parents=True)
    C.save(C.replace(C.replace(C.RunConfig(), "output.run_name", name), "method.lora.rank", 4 * len(name)),
           run / "config.yaml")
    w = EventWriter(run / "events.jsonl")
    w.status("starting", 0)
    w.status("running", 0, total_steps=len(losses))
    for i, loss in enumerate(losses, 1):
        w.write("train", i, loss=loss, lr=1e-3, grad_norm=1.0, epoch=i / len(losses), tokens_per_s=900.0,
                rss_gib=1.2)
    w.status("finished", len(losses))
    w.close()


def test_past_runs_are_listed_shown_and_compared(tmp_path, models_dir, page):
    saves = tmp_path / "saves"
    saves.mkdir()
    finished_run(saves, "first", [2.0, 1.6, 1.3, 1.1])
    time.sleep(1.1)  # runs are listed newest first, by their first event's time
    finished_run(saves, "second-run", [2.2, 1.5, 1.0, 0.8, 0.7, 0.65])
    app = App(saves, models_dir).start()
    try:
        open_page(page, app.url)
        go_to(page, "Train")
        table = runs_table_text(page)
        assert "first" in table and "second-run" in table and table.count("finished") == 2
        assert run_status(page) == "finished" and "second-run" in page.locator(".ws-progress").inner_text()
        assert loss_points(page) == 6  # the newest run is shown

        pick(page, "Show run", "first")
        wait_for(lambda: loss_points(page) == 4, "the chosen run's chart", 10, page)
        go_to(page, "Method")
        assert page.get_by_label("number input for LoRA rank").input_value() == "20"  # its config, loaded
        go_to(page, "Train")
        pick(page, "Compare loss with", "second-run")
        names = lambda: page.locator(".ws-chart-loss .js-plotly-plot").evaluate("el => el.data.map(t => t.name)")
        wait_for(lambda: "second-run" in names(), "the overlaid run on the loss chart", 30, page)
        shot(page, "12-compare")
    finally:
        app.stop()
