"""The quickstart on several identity sets: held-out hits (tuned / base), drift ratio, steps and wall time.

    python bench/identity.py                                   # the three test sets, the preset as it is
    python bench/identity.py --sets juniper --variant none="retain.method=none" \
        --variant lr5e-4="train.learning_rate=0.0005"          # compare remedies on one set

Each run is `python app.py train presets/quickstart.yaml --set data.datasets=[SET] ...` as a user would type
it; the numbers come from the run's report.json (engine.evaluate.report_card). Prints a Markdown table.
Wall times on a shared machine drift: compare rows of one invocation. OMP_NUM_THREADS=1 helps a loaded box.
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SETS = REPO / "tests" / "data" / "identity_sets"


def run(dataset: str, overrides: list[str], saves: Path, name: str) -> dict:
    cmd = [sys.executable, "app.py", "train", "presets/quickstart.yaml", "--set", f"data.datasets=[{dataset}]",
           "--set", f"output.saves_dir={saves / name}", "--set", f"output.run_name={name}"]
    for o in overrides:
        cmd += ["--set", o]
    t0 = time.time()
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.time() - t0
    run_dir = saves / name / name  # a saves folder per run: the next starts while this worker exits
    report = json.loads((run_dir / "report.json").read_text()) if (run_dir / "report.json").is_file() else {}
    resolved = json.loads((run_dir / "adapter" / "whetstone_resolved.json").read_text()) \
        if (run_dir / "adapter" / "whetstone_resolved.json").is_file() else {}
    if out.returncode:
        print(out.stdout[-1500:], out.stderr[-1500:], file=sys.stderr)
    return {"rc": out.returncode, "wall_s": round(wall), "report": report, "resolved": resolved}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="*", default=["juniper", "orla", "nimbus"],
                    help="names in tests/data/identity_sets, or dataset paths")
    ap.add_argument("--variant", action="append", default=[], metavar='NAME="k=v k=v"',
                    help="a named set of --set overrides (repeatable); default: the preset as it is")
    ap.add_argument("--saves", type=Path, default=None)
    a = ap.parse_args()
    variants = [(v.partition("=")[0], shlex.split(v.partition("=")[2])) for v in a.variant] or [("preset", [])]
    saves = a.saves or Path(tempfile.mkdtemp(prefix="whetstone-identity-"))
    print("| dataset | rows | variant | steps | held-out hits tuned / base | drift ratio | wall s |")
    print("|---|---|---|---|---|---|---|")
    for s in a.sets:
        path = next((p for p in (SETS / f"{s}.json", REPO / "data" / f"{s}.json") if p.is_file()), Path(s))
        rows = len(json.loads(path.read_text()))
        for vname, overrides in variants:
            r = run(str(path), overrides, saves, f"{path.stem}-{vname}")
            rep, res = r["report"], r["resolved"]
            hits = f"{rep.get('hits_tuned', '?')}/{rep.get('questions', '?')} / {rep.get('hits_base', '?')}"
            print(f"| {path.stem} | {rows} | {vname} | {res.get('total_steps', '?')} | {hits} | "
                  f"{rep.get('drift_ratio', '?')} | {r['wall_s']}{' (failed)' if r['rc'] else ''} |", flush=True)
    print(f"\nruns kept in {saves}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
