"""How quickly a worker is gone: from Stop (SIGTERM, what the Stop button and Ctrl-C send) to the process
exited and its memory freed, and from a run's final event to its process exit. Runs the real training
worker through the launcher, as the UI and the CLI do.

  python bench/stop_exit.py                      # the quickstart preset (the embedded 135M model)
  python bench/stop_exit.py --set train.batch_size=2 --repeat 3

Stop waits for the step in progress to end, writes a checkpoint, says "stopped" and exits; the report
splits that time into those parts. Prints a JSON report. No GPU needed (on a GPU the memory freed is
read from nvidia-smi too).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def gpu_used_mib() -> float | None:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    out = subprocess.run([exe, "--query-gpu=memory.used", "--format=csv,noheader,nounits"], capture_output=True,
                         text=True).stdout
    return float(out.splitlines()[0]) if out.strip() else None


class Events:
    """A run's events in order; wait() returns the next one that matches, keeping those read after it (a busy
    machine hands over 'checkpoint' and 'stopped' in one read)."""

    def __init__(self, reader):
        self.reader, self.pending = reader, []

    def wait(self, pred, timeout: float = 1800) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            while self.pending:
                e = self.pending.pop(0)
                if pred(e):
                    return e
            self.pending.extend(self.reader.read_new())
            if not self.pending:
                time.sleep(0.01)
        raise TimeoutError("no such event")


def gone_at(run_dir: Path, pgid: int) -> float:
    """When the run's worker and every process of its group have exited."""
    from engine.runs.processes import worker_alive
    while True:
        try:
            alive = worker_alive(run_dir)
            os.killpg(pgid, 0)
            group = True
        except ProcessLookupError:
            group = False
        if not alive and not group:
            return time.time()
        time.sleep(0.01)


def one(preset: str, overrides: list[str], saves: Path, name: str) -> dict:
    from engine import config as C
    from engine.runs import launcher
    from engine.runs.events import EventReader
    from engine.runs.processes import worker_info
    cfg = C.load(preset, overrides + [f"output.saves_dir={saves}", f"output.run_name={name}", "train.save_steps=4",
                                      "train.max_steps=1000"])
    run_dir = launcher.start(cfg)
    events = Events(EventReader(run_dir / "events.jsonl"))
    events.wait(lambda e: e.get("status") == "checkpoint")  # the first checkpoint is written
    steps = [events.wait(lambda e: e.get("kind") == "train")["t"] for _ in range(3)]
    pgid = int(worker_info(run_dir).get("pgid") or worker_info(run_dir)["pid"])
    gpu_before = gpu_used_mib()
    t0 = time.time()
    launcher.stop(run_dir)  # SIGTERM to the group, as the Stop button and the CLI's Ctrl-C do
    ck = events.wait(lambda e: e.get("status") == "checkpoint")
    stopped = events.wait(lambda e: e.get("status") == "stopped")
    t_gone = gone_at(run_dir, pgid)
    gpu_after = gpu_used_mib()
    return {"step_s": round(statistics.median(b - a for a, b in zip(steps, steps[1:])), 3),
            "stop_to_checkpoint_s": round(ck["t"] - t0, 3), "stop_to_stopped_event_s": round(stopped["t"] - t0, 3),
            "stop_to_gone_s": round(t_gone - t0, 3), "final_event_to_exit_s": round(t_gone - stopped["t"], 3),
            "gpu_mib_before_stop": gpu_before, "gpu_mib_after_exit": gpu_after}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="presets/quickstart.yaml")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    saves = Path(tempfile.mkdtemp(prefix="whetstone-stop-"))
    try:
        runs = [one(a.preset, a.overrides, saves, f"stop-{i}") for i in range(a.repeat)]
    finally:
        shutil.rmtree(saves, ignore_errors=True)
    keys = [k for k in runs[0] if k.endswith("_s")]
    report = {"preset": a.preset, "overrides": a.overrides, "runs": runs,
              "median": {k: round(statistics.median(r[k] for r in runs), 3) for k in keys},
              "load_average": os.getloadavg()}
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
