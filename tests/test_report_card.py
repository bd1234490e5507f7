"""An SFT run with held-out questions ends with a report card: every question answered by the tuned model and
the base (greedy, the run's template), hits on the target counted, the drift ratio measured, all in
saves/<run>/report.json and a `report` event; replay mixes the base model's own answers into training and the
schedule counts them. Real worker subprocesses on the tiny random Llama (the slow tests prove the quality)."""
import json

from conftest import run_worker
from engine.runs import report
from engine.runs.events import read_all
from webui import report_view


def test_a_run_ends_with_a_report_card_and_replay_rows_ride_along(make_config):
    path = make_config(train={"max_steps": 2},
                       retain={"method": "replay", "share": 0.25, "max_new_tokens": 12},
                       report={"held_out": "auto", "max_new_tokens": 8, "drift_tokens": 8})
    out = run_worker(path)
    assert out.returncode == 0, out.stderr[-3000:]
    run = path.parent
    events = read_all(run / "events.jsonl")
    data = next(e for e in events if e["kind"] == "data")
    assert data["train_rows"] == 92 and data["general_rows"] == 23  # 0.25 x 92 identity rows
    resolved = next(e for e in events if e["kind"] == "resolved")
    assert (resolved["total_steps"], resolved["general_rows"], resolved["schedule_rule"]) == (2, 23, "max_steps")
    assert "retain: 23 general rows mixed in" in out.stdout and "schedule: 92 + 23 general rows" in out.stdout

    card = json.loads((run / "report.json").read_text())
    assert (card["held_out"], card["questions"], card["target"]) == ("identity_eval", 12, "Wren")
    assert len(card["rows"]) == 12 and all(isinstance(r["tuned"], str) and isinstance(r["base"], str)
                                           for r in card["rows"])
    assert card["hits_tuned"] == sum("wren" in r["tuned"].lower() for r in card["rows"])
    assert card["drift_prompts"] == 24 and card["drift_tokens"] > 0 and card["drift_ratio"] > 0
    kinds = [(e["kind"], e.get("status")) for e in events]
    assert kinds.index(("report", None)) < kinds.index(("status", "finished"))  # the card, then the end
    assert report.load(run) == card
    assert "report card:" in report.text(card) and "Q: " in report.text(card)
    html = report_view.card_html(run)
    assert "Report card" in html and f"/{card['questions']}" in html and "Drift ratio" in html


def test_a_report_card_that_cannot_be_made_never_fails_the_trained_run(make_config, tmp_path):
    broken = tmp_path / "held_out.json"
    broken.write_text('[{"instruction": "Who are you?", "output": "Wren."}, {"instruction": ')  # cut off
    path = make_config(train={"max_steps": 1}, report={"held_out": str(broken), "drift": False})
    out = run_worker(path)
    assert out.returncode == 0, out.stderr[-3000:]
    events = read_all(path.parent / "events.jsonl")
    card = next(e for e in events if e["kind"] == "report")
    assert "report card could not be made" in card["error"] and "held_out.json" in card["error"]
    assert events[-1]["status"] == "finished" and (path.parent / "adapter").is_dir()
