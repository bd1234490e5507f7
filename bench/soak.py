"""Soak: a long training on a tiny model while a browser reloads the page every few seconds and a
second client polls the app's API. Checks that no event is lost, that the app process's memory
stays flat, and that the run ends complete.

  python bench/soak.py                      # ~10 minutes: 2000 steps, reload every 3 s
  python bench/soak.py --steps 300 --reload-every 2

Prints a JSON report and exits 1 when a check fails. tests/test_soak.py runs a short version.
Needs Debian chromium (/usr/bin/chromium) and playwright; no GPU, no network.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ENV = dict(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_OFFLINE="1",
           TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1")


def tiny_model(out: Path) -> Path:
    """A 2-layer random Llama with the default model's tokenizer (as tests/conftest.py builds it)."""
    if (out / "config.json").is_file():
        return out
    code = f"""
import torch
from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
from engine.modeling.load import ensure_embedded
tok = AutoTokenizer.from_pretrained(ensure_embedded("smollm2-135m-instruct"))
torch.manual_seed(0)
cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                  bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                  tie_word_embeddings=True)
LlamaForCausalLM(cfg).save_pretrained({str(out)!r})
tok.save_pretrained({str(out)!r})
"""
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, env=dict(os.environ, **ENV))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def start_app(saves: Path, models: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = dict(os.environ, **ENV, WHETSTONE_SAVES=str(saves), WHETSTONE_MODELS_DIR=str(models))
    proc = subprocess.Popen([sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("the app exited: " + log.read_text()[-2000:])
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the app did not come up in 120 s")


class Poller(threading.Thread):
    """The second client: asks the app's API for the runs list, over and over, as a script would."""

    def __init__(self, url: str, every: float):
        super().__init__(daemon=True)
        self.url, self.every = url, every
        self.calls = self.errors = 0
        self.last_error = ""
        self.halt = threading.Event()

    def run(self) -> None:
        from gradio_client import Client
        client = Client(self.url, verbose=False)
        while not self.halt.is_set():
            try:
                client.predict(api_name="/runs_refresh")
                urllib.request.urlopen(self.url + "gradio_api/info", timeout=10).read()
                self.calls += 1
            except Exception as e:  # counted and reported, never fatal to the soak itself
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"[:300]
            self.halt.wait(self.every)


def soak(steps: int = 2000, reload_every: float = 3.0, poll_every: float = 0.5, workdir: Path | None = None,
         rss_growth_mib: float = 60.0, model: Path | None = None) -> dict:
    from playwright.sync_api import sync_playwright

    from engine import config as C
    from engine.runs import launcher
    from engine.runs.events import read_all

    workdir = Path(workdir or tempfile.mkdtemp(prefix="whetstone-soak-"))
    saves, models = workdir / "saves", workdir / "models"
    saves.mkdir(parents=True, exist_ok=True)
    models.mkdir(exist_ok=True)
    model = model or tiny_model(models / "tiny-llama")
    app, url = start_app(saves, models, workdir / "app.log")
    report: dict = {"steps": steps, "workdir": str(workdir)}
    run_dir = None
    poller = Poller(url, poll_every)
    try:
        cfg = C.RunConfig()
        for k, v in {"model.name_or_path": str(model), "data.datasets": ["identity"], "data.cutoff_len": 128,
                     "train.max_steps": steps, "train.batch_size": 2, "train.learning_rate": 0.003,
                     "train.save_steps": max(10, steps // 5), "train.logging_steps": 1,
                     "output.saves_dir": str(saves), "output.run_name": time.strftime("soak-%H%M%S")}.items():
            cfg = C.replace(cfg, k, v)
        run_dir = launcher.start(cfg)
        poller.start()
        rss, seen_steps, reloads, page_errors = [], [], 0, []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.on("pageerror", lambda e: page_errors.append(str(e)[:300]))
            status = None
            bar = page.locator(".ws-progress[data-status]").first
            while launcher.worker_alive(run_dir):
                page.goto(url)  # a reload: the page must re-attach to the running run by itself
                page.get_by_role("tab", name="Train").click()
                bar.wait_for(state="attached", timeout=60_000)
                page.wait_for_timeout(reload_every * 1000)
                status, step = bar.get_attribute("data-status"), bar.get_attribute("data-step")
                seen_steps.append(int(step or 0))
                reloads += 1
                rss.append(rss_mib(app.pid))
            # The run ended while this page was open: its live ticks must show the end, without a reload.
            deadline = time.time() + 60
            while time.time() < deadline and status not in ("finished", "failed", "stopped"):
                page.wait_for_timeout(500)
                status, step = bar.get_attribute("data-status"), bar.get_attribute("data-step")
            seen_steps.append(int(step or 0))
            rss.append(rss_mib(app.pid))
            browser.close()
        poller.halt.set()
        poller.join(30)
        evts = read_all(run_dir / "events.jsonl")
        train_steps = [e["step"] for e in evts if e["kind"] == "train"]
        third = max(1, len(rss) // 3)
        early, late = sorted(rss[1:third + 1] or rss[:1]), sorted(rss[-third:])
        report.update(
            final_status=status, page_final_step=seen_steps[-1] if seen_steps else None, reloads=reloads,
            page_steps_monotonic=seen_steps == sorted(seen_steps), api_calls=poller.calls, api_errors=poller.errors,
            api_last_error=poller.last_error, page_errors=page_errors[:5], train_events=len(train_steps),
            app_rss_mib_first=round(rss[0], 1), app_rss_mib_early_median=round(early[len(early) // 2], 1),
            app_rss_mib_late_median=round(late[len(late) // 2], 1), app_rss_mib_max=round(max(rss), 1),
            final_event=evts[-1] if evts else None,
            output_saved=(run_dir / "adapter" / "adapter_model.safetensors").is_file())
        problems = []
        if status != "finished" or evts[-1].get("status") != "finished":
            problems.append(f"the run did not finish: page says {status}, last event {evts[-1] if evts else None}")
        if sorted(train_steps) != list(range(1, steps + 1)):
            problems.append(f"train events lost or repeated: {len(train_steps)} for {steps} steps")
        if seen_steps and seen_steps[-1] != steps:
            problems.append(f"the page's last step is {seen_steps[-1]}, not {steps}")
        if not report["page_steps_monotonic"]:
            problems.append(f"the page's step went backwards across reloads: {seen_steps}")
        if report["app_rss_mib_late_median"] - report["app_rss_mib_early_median"] > rss_growth_mib:
            problems.append(f"the app's memory grew {report['app_rss_mib_early_median']} -> "
                            f"{report['app_rss_mib_late_median']} MiB")
        if poller.calls == 0 or poller.errors > max(2, poller.calls // 20):
            problems.append(f"the API client failed: {poller.errors} errors in {poller.calls + poller.errors} "
                            f"calls ({poller.last_error})")
        if not report["output_saved"]:
            problems.append("no adapter was saved")
        report["problems"] = problems
        return report
    finally:
        poller.halt.set()
        if run_dir is not None:
            launcher.stop(run_dir, grace_s=10, wait=True)
        app.send_signal(signal.SIGINT)
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            app.kill()
            app.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2000, help="training steps (about 0.2-0.3 s each on 2 CPU cores)")
    ap.add_argument("--reload-every", type=float, default=3.0, help="seconds between page reloads")
    ap.add_argument("--poll-every", type=float, default=0.5, help="seconds between API calls of the second client")
    ap.add_argument("--workdir", type=Path, help="keep saves/ and the app log here (default: a temp folder)")
    a = ap.parse_args(argv)
    report = soak(a.steps, a.reload_every, a.poll_every, a.workdir)
    print(json.dumps(report, indent=1, default=str))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
