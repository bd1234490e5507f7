"""Many runs from the terminal: `python app.py sweep` (one queued run per grid combination), `compare` (the
table, best run marked) and `queue` (list, cancel, GPUs)."""
from __future__ import annotations

import argparse
import sys

from engine import config as C
from engine.runs import launcher


def cmd_sweep(argv: list[str]) -> int:
    """Queue one run per combination of the grid, follow them one line each, print the comparison."""
    from engine.runs import compare, sweep
    from engine.runs.paths import saves_dir
    ap = argparse.ArgumentParser(prog="python app.py sweep", description=cmd_sweep.__doc__ + " Every combination "
                                 "is checked first; the runs go through the queue, so they also show in the web UI.")
    ap.add_argument("config", help="the base run config YAML, e.g. presets/quickstart.yaml")
    ap.add_argument("--grid", action="append", default=[], metavar="KEY=V1,V2,...",
                    help="a field and its values (YAML, like --set), e.g. train.learning_rate=1e-4,3e-4 (repeatable)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override one field for every run (repeatable)")
    ap.add_argument("--name", default="", help="the sweep's name (default sweep-<date>-<time>); its runs are named "
                    "<name>-<n>-<field>_<value>...")
    ap.add_argument("--yes", action="store_true", help=f"queue a grid of more than {sweep.G.MAX_RUNS} runs")
    ap.add_argument("--detach", action="store_true", help="queue the runs and return (compare them later)")
    a = ap.parse_args(argv)
    try:
        base = C.to_dict(C.load(a.config, a.overrides, check_files=False))
        saves = saves_dir(base["output"]["saves_dir"])
        name, runs = sweep.queue_sweep(saves, base, a.grid, a.name, confirmed=a.yes)
    except (C.ConfigError, launcher.LaunchError, ValueError) as e:
        print(f"Nothing was queued.\n{e}", file=sys.stderr)
        return 2
    print(f"sweep {name}: {len(runs)} runs queued in {saves}", flush=True)
    if a.detach:
        print(f"they run one after another; compare them with: python app.py compare {name} --saves {saves}")
        return 0
    rc = sweep.follow(saves, runs)
    found, _ = compare.resolve(saves, [name])
    if found:
        print("\n" + compare.text(compare.table([compare.measure(r) for r in found])))
    return rc


def cmd_compare(argv: list[str]) -> int:
    """Compare runs: losses, tokens/s, peak memory, wall time, held-out scores, the fields that differ."""
    from engine.runs import compare
    from engine.runs.paths import saves_dir
    ap = argparse.ArgumentParser(prog="python app.py compare", description=cmd_compare.__doc__)
    ap.add_argument("runs", nargs="+", help="run folders (saves/<run>), run names, or a sweep's name")
    ap.add_argument("--saves", default="saves", help="where run and sweep names are looked up (default saves/)")
    ap.add_argument("--sort", choices=[c.key for c in compare.COLUMNS],
                    help="sort by this column, best first (default: the one that picks the best run)")
    a = ap.parse_args(argv)
    found, problems = compare.resolve(saves_dir(a.saves), a.runs)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    print(compare.text(compare.table([compare.measure(r) for r in found], a.sort)))
    return 0


def cmd_queue(argv: list[str]) -> int:
    """The run queue: list it, cancel waiting runs, or let queued runs share GPUs."""
    from engine.config import queue as QS
    from engine.runs import queue as Q
    from engine.runs.paths import saves_dir
    from engine.runs.queue_runner import ensure_runner, live_runs
    ap = argparse.ArgumentParser(prog="python app.py queue", description=cmd_queue.__doc__)
    ap.add_argument("action", nargs="?", choices=["list", "cancel", "gpus"], default="list")
    ap.add_argument("args", nargs="*", help="cancel: run names; gpus: GPU indices such as 0,1,2,3 ('' = one "
                    "run at a time)")
    ap.add_argument("--saves", default="saves", help="the saves folder (default saves/)")
    a = ap.parse_args(argv)
    saves = saves_dir(a.saves)
    try:
        if a.action == "cancel":
            for name in a.args:
                print(Q.cancel(saves, name))
        elif a.action == "gpus":
            settings = QS.parse_gpus(",".join(a.args))
            QS.save(Q.folder(saves), settings)
            print(f"queued runs may use GPUs {settings.gpus}" if settings.gpus else "queued runs go one at a time")
            ensure_runner(saves)
        else:
            q = Q.read(saves)
            for name in live_runs(saves):
                print(f"running  {name}")
            for i, e in enumerate(q.entries, 1):
                print(f"{i:>7}  {e.name}" + (f"  (sweep {e.sweep})" if e.sweep else "")
                      + (f"\n         cannot start: {e.error.splitlines()[0]}" if e.error else ""))
            if not q.entries:
                print("the queue is empty")
    except (Q.QueueError, QS.QueueSettingsError) as e:
        print(str(e), file=sys.stderr)
        return 2
    return 0
