"""The GRPO demo, measured: train presets/grpo.yaml with the real worker (or read a run already trained),
print its reward curve (the mean reward of every 10 logged steps, and per reward function) and the mean
reward of the base and the tuned model's greedy answers to the held-out sums of data/arithmetic_eval.json.

    python bench/grpo_demo.py                          # train the preset (60 steps), then judge it
    python bench/grpo_demo.py --steps 30               # a shorter run
    python bench/grpo_demo.py --run saves/<run>        # judge a run that already finished

A script, not a test: a shared machine's figures drift, and sampling makes every run a little different.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from statistics import mean

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def train(steps: int | None, saves: Path) -> Path:
    from engine import config as C
    sets = [f"output.saves_dir={saves}", f"output.run_name=grpo-demo-{time.strftime('%Y%m%d-%H%M%S')}"]
    if steps:
        sets.append(f"train.max_steps={steps}")
    cfg = C.load(REPO / "presets" / "grpo.yaml", overrides=sets)
    run_dir = saves / cfg.output.run_name
    run_dir.mkdir(parents=True)
    C.save(cfg, run_dir / "config.yaml")
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "engine.train", "--config", str(run_dir / "config.yaml")], cwd=REPO)
    print(f"trained in {time.time() - t0:.0f} s (exit {r.returncode})")
    return run_dir


def curve(run_dir: Path) -> None:
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    train = [e for e in events if e["kind"] == "train" and e.get("reward") is not None]
    funcs = sorted({k for e in train for k in e if k.startswith("rewards/") and k.endswith("/mean")})
    print("\n| steps | mean reward | " + " | ".join(f.split("/")[1] for f in funcs) + " | completion tokens | KL |")
    print("|---|---|" + "---|" * len(funcs) + "---|---|")
    for i in range(0, len(train), 10):
        part = train[i:i + 10]
        cells = [f"{mean(e['reward'] for e in part):.3f}"] + [f"{mean(e.get(f, 0.0) for e in part):.3f}" for f in funcs]
        cells += [f"{mean(e.get('completions/mean_length', 0.0) for e in part):.1f}",
                  f"{mean(e.get('kl') or 0.0 for e in part):.3f}"]
        print(f"| {part[0]['step']}-{part[-1]['step']} | " + " | ".join(cells) + " |")
    if len(train) >= 20:
        print(f"\nfirst 10 steps {mean(e['reward'] for e in train[:10]):.3f} -> last 10 steps "
              f"{mean(e['reward'] for e in train[-10:]):.3f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, help="a finished grpo run to judge instead of training one")
    ap.add_argument("--steps", type=int, help="train.max_steps for the run (default: the preset's)")
    ap.add_argument("--saves", type=Path, default=REPO / "saves")
    a = ap.parse_args()
    run_dir = a.run or train(a.steps, a.saves)
    curve(run_dir)
    from engine.train.rewards import judge
    rows = json.loads((REPO / "data" / "arithmetic_eval.json").read_text())
    got = judge(run_dir, rows)
    print(f"\nheld-out sums ({len(rows)}), mean reward of greedy replies: base {got['base']:.3f}, "
          f"tuned {got['tuned']:.3f}")
    for name in sorted(k.split("/", 1)[1] for k in got if k.startswith("base/")):
        print(f"  {name}: base {got['base/' + name]:.3f}, tuned {got['tuned/' + name]:.3f}")
    for q, b, t in list(zip((r["instruction"] for r in rows), got["base_replies"], got["tuned_replies"]))[:5]:
        print(f"  {q}  base: {b!r}  tuned: {t!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
