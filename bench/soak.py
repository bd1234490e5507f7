"""Soak: a training run on a tiny model while a browser reloads the page over and over (300 times by
default) and two API clients poll the app. Checks that no event is lost or repeated, that the page never
goes backwards, that the run ends complete, and that the app's memory stays flat: the RSS slope per
reload (least squares over the reloads after the first 10%) must stay under --max-slope MiB.

  python bench/soak.py                           # 300 reloads (~15-25 min on 2 cores) during one run
  python bench/soak.py --reloads 60 --steps 300  # shorter; the run may end before the reloads do

--steps 0 (the default) trains for as long as the reloads last and then presses Stop, so every reload
happens during the run whatever the machine's speed; the run must then end "stopped" with its checkpoint,
and the page must show it without a reload.

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


def proc_status(pid: int, key: str) -> int:
    """One number from /proc/PID/status (VmRSS in KiB, Threads, ...); -1 when the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def huge_regions(pid: int) -> tuple[int, float]:
    """How many anonymous mappings of 512 MiB or more, and their resident MiB: pyarrow's mimalloc reserves
    1 GiB at a time and keeps it (webui/allocator.py keeps the app off it); glibc's thread heaps are 64 MiB,
    Python's arenas 1 MiB."""
    count, total, big = 0, 0, False
    try:
        with open(f"/proc/{pid}/smaps") as f:
            for line in f:
                head = line.split()
                if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:  # a mapping's first line
                    a, b = (int(x, 16) for x in head[0].split("-"))
                    big = b - a >= 512 << 20 and len(head) == 5  # no file name: anonymous
                    count += big
                elif big and head[0] == "Rss:":
                    total += int(head[1])
    except OSError:
        return -1, float("nan")
    return count, total / 1024


def rss_mib(pid: int) -> float:
    kib = proc_status(pid, "VmRSS")
    return kib / 1024 if kib >= 0 else float("nan")


def start_app(saves: Path, models: Path, log: Path, tries: int = 3) -> tuple[subprocess.Popen, str]:
    """The app, started as a user does (python app.py). On a loaded machine Gradio's own check that it can
    reach localhost sometimes times out and it exits ("When localhost is not accessible..."): tried again."""
    for attempt in range(tries):
        try:
            return _start_app(saves, models, log)
        except RuntimeError:
            if attempt == tries - 1:
                raise
    raise AssertionError("unreachable")


def _start_app(saves: Path, models: Path, log: Path) -> tuple[subprocess.Popen, str]:
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
        client = None
        while not self.halt.is_set():
            try:
                client = client or Client(self.url, verbose=False)  # its first call may time out on a busy machine
                client.predict(api_name="/runs_refresh")
                urllib.request.urlopen(self.url + "gradio_api/info", timeout=10).read()
                self.calls += 1
            except Exception as e:  # counted and reported, never fatal to the soak itself
                self.errors += 1
                self.last_error = f"{type(e).__name__}: {e}"[:300]
            self.halt.wait(self.every)


def goto(page, url: str, tries: int = 3) -> None:
    """Load the page; a navigation the browser aborted (net::ERR_ABORTED, seen on a machine at load 30) is
    tried again, and counted as a reload like any other."""
    for attempt in range(tries):
        try:
            page.goto(url, timeout=120_000)
            return
        except Exception as e:  # playwright's Error
            if "ERR_ABORTED" not in str(e) or attempt == tries - 1:
                raise
            print(f"page load aborted ({str(e).splitlines()[0][:120]}); again", file=sys.stderr, flush=True)


def slope(values: list[float]) -> float:
    """Least-squares slope of values against their index (MiB per reload for RSS readings)."""
    n = len(values)
    if n < 2:
        return 0.0
    mx, my = (n - 1) / 2, sum(values) / n
    return sum((i - mx) * (v - my) for i, v in enumerate(values)) / sum((i - mx) ** 2 for i in range(n))


def soak(steps: int = 0, reloads: int = 300, reload_every: float = 1.0, poll_every: float = 0.5,
         clients: int = 2, workdir: Path | None = None, max_slope: float = 0.05, model: Path | None = None) -> dict:
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
    until_stopped = steps <= 0  # as long as the reloads last, then Stop
    report: dict = {"steps": steps if not until_stopped else "until the reloads end", "workdir": str(workdir)}
    expected_end = "stopped" if until_stopped else "finished"
    run_dir = None
    pollers = [Poller(url, poll_every) for _ in range(clients)]
    try:
        cfg = C.RunConfig()
        for k, v in {"model.name_or_path": str(model), "data.datasets": ["identity"], "data.cutoff_len": 128,
                     "train.max_steps": steps if not until_stopped else 10**7, "train.batch_size": 2,
                     "train.learning_rate": 0.003, "train.save_steps": max(10, steps // 5) if not until_stopped else 500,
                     "train.save_total_limit": 2, "train.logging_steps": 1, "report.held_out": "none",
                     "output.saves_dir": str(saves), "output.run_name": time.strftime("soak-%H%M%S")}.items():
            cfg = C.replace(cfg, k, v)
        run_dir = launcher.start(cfg)
        for poller in pollers:
            poller.start()
        rss, threads, seen_steps, during_run, page_errors = [], [], [], 0, []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
            page.on("pageerror", lambda e: page_errors.append(str(e)[:300]))
            status = None
            bar = page.locator(".ws-progress[data-status]").first
            for _ in range(reloads):
                going = launcher.worker_alive(run_dir)
                goto(page, url)  # a reload: the page must re-attach to the running run by itself
                page.get_by_role("tab", name="Train").click()
                bar.wait_for(state="attached", timeout=60_000)
                page.wait_for_timeout(reload_every * 1000)
                status, step = bar.get_attribute("data-status"), bar.get_attribute("data-step")
                seen_steps.append(int(step or 0))
                during_run += going
                rss.append(rss_mib(app.pid))
                threads.append(proc_status(app.pid, "Threads"))
                if len(rss) % 25 == 0:  # a long soak shows where it is (and what it measured so far)
                    print(f"reload {len(rss)}: app RSS {rss[-1]:.1f} MiB, {threads[-1]} threads, "
                          f"page at step {step} ({status})",
                          file=sys.stderr, flush=True)
            huge, huge_mib = huge_regions(app.pid)
            if until_stopped:
                launcher.stop(run_dir, wait=True)  # the Stop button's call
            # The run ends while this page is open: its live ticks must show the end, without a reload.
            deadline = time.time() + 3600
            while time.time() < deadline and status not in ("finished", "failed", "stopped"):
                page.wait_for_timeout(1000)
                status, step = bar.get_attribute("data-status"), bar.get_attribute("data-step")
            seen_steps.append(int(step or 0))
            browser.close()
        for poller in pollers:
            poller.halt.set()
            poller.join(30)
        evts = read_all(run_dir / "events.jsonl")
        train_steps = [e["step"] for e in evts if e["kind"] == "train"]
        steps = steps if not until_stopped else max(train_steps, default=0)
        settled = rss[len(rss) // 10:]  # the first reloads fill caches (imports, compiled templates)
        calls, errors = sum(q.calls for q in pollers), sum(q.errors for q in pollers)
        report.update(
            final_status=status, page_final_step=seen_steps[-1] if seen_steps else None, reloads=len(rss),
            reloads_during_run=during_run, page_steps_monotonic=seen_steps == sorted(seen_steps),
            api_clients=clients, api_calls=calls, api_errors=errors,
            api_last_error=next((q.last_error for q in pollers if q.last_error), ""), page_errors=page_errors[:5],
            train_events=len(train_steps), events_lost=len(set(range(1, steps + 1)) - set(train_steps)),
            events_repeated=len(train_steps) - len(set(train_steps)),
            app_rss_mib_first=round(rss[0], 1), app_rss_mib_last=round(rss[-1], 1), app_rss_mib_max=round(max(rss), 1),
            rss_mib_per_reload=round(slope(settled), 4), app_huge_regions=huge,
            app_huge_regions_mib=round(huge_mib, 1), final_event=evts[-1] if evts else None,
            rss_mib_every_10_reloads=[round(v, 1) for v in rss[::10]], app_threads_every_10_reloads=threads[::10],
            output_saved=(run_dir / "adapter" / "adapter_model.safetensors").is_file() if not until_stopped else
            bool(evts) and (run_dir / "checkpoints" / str(evts[-1].get("checkpoint", "-"))).is_dir())
        problems = []
        if status != expected_end or evts[-1].get("status") != expected_end:
            problems.append(f"the run did not end {expected_end}: page says {status}, last event {evts[-1] if evts else None}")
        if report["events_lost"] or report["events_repeated"] or len(train_steps) != steps:
            problems.append(f"train events lost or repeated: {len(train_steps)} for {steps} steps")
        if seen_steps and seen_steps[-1] != steps:
            problems.append(f"the page's last step is {seen_steps[-1]}, not {steps}")
        if not report["page_steps_monotonic"]:
            problems.append(f"the page's step went backwards across reloads: {seen_steps}")
        if len(settled) >= 50 and report["rss_mib_per_reload"] > max_slope:
            problems.append(f"the app's memory grows {report['rss_mib_per_reload']} MiB per reload "
                            f"({report['app_rss_mib_first']} -> {report['app_rss_mib_last']} MiB)")
        if huge > 0:
            problems.append(f"the app reserved {huge} anonymous region(s) of 512 MiB or more, {huge_mib:.1f} MiB "
                            "resident (pyarrow's mimalloc?), which malloc_trim cannot give back: see webui/allocator.py")
        if calls == 0 or errors > max(2, calls // 20):
            problems.append(f"the API clients failed: {errors} errors in {calls + errors} calls "
                            f"({report['api_last_error']})")
        if page_errors:
            problems.append(f"the page raised: {page_errors[:2]}")
        if not report["output_saved"]:
            problems.append("no adapter was saved" if not until_stopped else "Stop left no checkpoint")
        report["problems"] = problems
        return report
    finally:
        for poller in pollers:
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
    ap.add_argument("--steps", type=int, default=0, help="training steps (about 0.2-0.3 s each on 2 CPU cores); "
                    "0: train until the reloads end, then Stop")
    ap.add_argument("--reloads", type=int, default=300, help="page reloads (the run ends, or goes on, meanwhile)")
    ap.add_argument("--reload-every", type=float, default=1.0, help="seconds on the page after each reload")
    ap.add_argument("--clients", type=int, default=2, help="API clients polling the runs list")
    ap.add_argument("--poll-every", type=float, default=0.5, help="seconds between each client's API calls")
    ap.add_argument("--max-slope", type=float, default=0.05, help="largest RSS growth allowed, MiB per reload")
    ap.add_argument("--workdir", type=Path, help="keep saves/ and the app log here (default: a temp folder)")
    a = ap.parse_args(argv)
    # kill / timeout send SIGTERM: end through the finally blocks, which stop the run and the app (without this
    # both went on, a 10**7-step worker included, and slowed the machine for everything after)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report = soak(a.steps, a.reloads, a.reload_every, a.poll_every, a.clients, a.workdir, a.max_slope)
    print(json.dumps(report, indent=1, default=str))
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
