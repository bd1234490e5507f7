"""Comparing runs from what their workers wrote: the best run picked by the right figure, the fields that
differ as columns, throughput and memory read by the metric table's names, held-out scores, and the CLI."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from engine import config as C
from engine.runs import compare
from engine.runs.events import EventWriter
from tests.conftest import REPO


def a_run(saves: Path, name: str, losses: list[float], evals: list[float] = (), status: str = "finished",
          lr: float = 2e-4, memory: dict | None = None, tokens_per_s: float = 900.0) -> Path:
    """A run folder as the worker leaves it, written with the worker's own event writer."""
    run = saves / name
    run.mkdir(parents=True)
    cfg = C.replace(C.replace(C.RunConfig(), "output.run_name", name), "train.learning_rate", lr)
    C.save(cfg, run / "config.yaml")
    w = EventWriter(run / "events.jsonl")
    w.status("starting", 0)
    w.status("running", 0, total_steps=len(losses))
    for i, loss in enumerate(losses, 1):
        w.write("train", i, loss=loss, lr=lr, tokens_per_s=tokens_per_s + i, **(memory or {"rss_gib": 1.0 + i / 10}))
        if i - 1 < len(evals):
            w.write("eval", i, eval_loss=evals[i - 1])
    if status == "failed":
        w.error("out of memory")
    w.status(status, len(losses))
    w.close()
    return run


def test_the_best_run_is_the_lowest_best_eval_loss_and_the_differing_fields_are_columns(tmp_path):
    runs = [a_run(tmp_path, "a", [2.0, 1.5, 1.2], evals=[1.9, 1.4, 1.6], lr=1e-4),   # best eval 1.4 at step 2
            a_run(tmp_path, "b", [2.0, 1.2, 0.9], evals=[1.8, 1.5, 1.45], lr=3e-4),  # lowest train loss
            a_run(tmp_path, "c", [2.0, 1.0, 0.5], evals=[1.7, 1.0, 0.9], lr=1e-3, status="failed")]
    t = compare.table([compare.measure(r) for r in runs])
    assert t.by == "best_eval_loss" and t.best == "a"  # a failed run is never the best
    assert t.fields == ["train.learning_rate"]
    assert t.headers[:4] == ["best", "run", "status", "train.learning_rate"]
    col = t.headers.index("best eval loss")
    assert [(r[1], r[0], r[col]) for r in t.rows] == [("c", "", 0.9), ("a", "*", 1.4), ("b", "", 1.45)]
    assert [r[3] for r in t.rows] == [1e-3, 1e-4, 3e-4]
    assert t.rows[0][2] == "failed"
    by_train = compare.table([compare.measure(r) for r in runs], sort_by="train_loss")
    assert [r[1] for r in by_train.rows] == ["c", "b", "a"] and by_train.best == "a"
    assert "best: a (lowest best eval loss)" in compare.text(t)


def test_without_eval_splits_the_final_train_loss_decides(tmp_path):
    runs = [a_run(tmp_path, "x", [2.0, 1.1]), a_run(tmp_path, "y", [2.0, 0.8], lr=1e-3)]
    t = compare.table([compare.measure(r) for r in runs])
    assert t.by == "train_loss" and t.best == "y"
    assert "best eval loss" not in t.headers  # a figure no run has is left out


def test_throughput_memory_and_held_out_scores_come_from_the_runs_own_records(tmp_path):
    gpu = a_run(tmp_path, "gpu", [2.0, 1.0, 0.9], memory={"vram_alloc_gib": 3.0, "vram_peak_gib": 5.5,
                                                          "vram_peak_gib_rank1": 6.25, "rss_gib": 9.0},
                tokens_per_s=1000.0)
    cpu = a_run(tmp_path, "cpu", [2.0, 1.0, 0.95], tokens_per_s=100.0)
    out = cpu / "eval" / "20250101-000000-heldout"
    out.mkdir(parents=True)
    (out / "results.json").write_text(json.dumps({"summary": {"rouge_l_tuned": 0.61, "loss_tuned": 1.23},
                                                  "rows": []}))
    g, c = compare.measure(gpu), compare.measure(cpu)
    assert g.values["peak_gib"] == 6.25 and g.memory == "GPU"   # every rank's reading, VRAM over host RAM
    assert c.values["peak_gib"] == 1.3 and c.memory == "process"
    assert g.values["tokens_per_s"] == 1002.0                    # the median of the logged rates
    assert c.values["heldout_rouge_l"] == 0.61 and c.values["heldout_loss"] == 1.23
    assert g.values["heldout_rouge_l"] is None and g.values["wall_s"] >= 0


def test_compare_from_the_terminal_takes_folders_names_and_says_what_it_cannot_find(tmp_path):
    a_run(tmp_path, "a", [2.0, 1.5], lr=1e-4)
    a_run(tmp_path, "b", [2.0, 1.0], lr=3e-4)
    out = subprocess.run([sys.executable, "app.py", "compare", str(tmp_path / "a"), "b", "--saves", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "train.learning_rate" in lines[0] and lines[2].startswith("*") and " b " in lines[2]
    assert "best: b (lowest final train loss)" in out.stdout
    out = subprocess.run([sys.executable, "app.py", "compare", "nothing-here", "--saves", str(tmp_path)],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "nothing-here: not a run folder" in out.stderr
