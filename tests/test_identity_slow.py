"""The quickstart preset, run from the CLI as the README says, really teaches the embedded 135M model a new
identity (CPU, minutes) and keeps what it knew: the bundled set, and three sets of other names, makers,
wordings and sizes swapped in with `--set data.datasets=[...]` as users do. Each run's report card (written
by the worker) must name the new identity in every held-out phrasing (the bundled set: in at least 10 of 12,
see WREN_MIN_HITS), the base in none, and keep the drift ratio on general prompts within 1.10. Each set is
trained once per session."""
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import quickstart_run as qs
from conftest import REPO

pytestmark = pytest.mark.slow

SETS = REPO / "tests" / "data" / "identity_sets"
DRIFT_BOUND = 1.10
_runs: dict[str, tuple[Path, str, float]] = {}


def train_set(name: str) -> tuple[Path, str, float]:
    """(run folder, CLI output, wall seconds) of the quickstart on tests/data/identity_sets/<name>.json."""
    if name not in _runs:
        saves = Path(tempfile.mkdtemp(prefix=f"whetstone-{name}-"))
        t0 = time.time()
        out = subprocess.run([sys.executable, "app.py", "train", "presets/quickstart.yaml",
                              "--set", f"data.datasets=[{SETS / name}.json]", "--set", f"output.saves_dir={saves}",
                              "--set", f"output.run_name={name}"], cwd=REPO, capture_output=True, text=True,
                             timeout=3600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        _runs[name] = (saves / name, out.stdout, time.time() - t0)
    return _runs[name]


def check_card(run: Path, name: str, rows_file: Path) -> dict:
    card = json.loads((run / "report.json").read_text())
    held = json.loads(rows_file.with_name(rows_file.stem + "_eval.json").read_text())
    train_qs = {r["instruction"].strip().lower() for r in json.loads(rows_file.read_text())}
    assert not {r["instruction"].strip().lower() for r in held} & train_qs, "held-out phrasings must be unseen"
    assert card["questions"] == len(held) and card["target"] == name
    table = "\n".join(f"Q: {r['question']}\n  tuned: {r['tuned']!r}\n  base:  {r['base']!r}" for r in card["rows"])
    print(f"{run.name}: {card['hits_tuned']}/{card['questions']} tuned, {card['hits_base']} base, "
          f"drift {card['drift_ratio']}\n{table}")
    tuned = [r for r in card["rows"] if name.lower() in r["tuned"].lower()]  # counted here, not taken on trust
    base = [r for r in card["rows"] if name.lower() in r["base"].lower()]
    assert len(tuned) == len(held) == card["hits_tuned"], table
    assert base == [] and card["hits_base"] == 0, table
    assert card["drift_ratio"] <= DRIFT_BOUND, f"drift {card['drift_ratio']} > {DRIFT_BOUND}: it forgot\n{table}"
    return card


@pytest.mark.parametrize("name, rows", [("Juniper", 40), ("Orla", 100), ("Nimbus", 250)])
def test_the_quickstart_teaches_your_own_identity_set_and_keeps_general_answers(name, rows):
    rows_file = SETS / f"{name.lower()}.json"
    assert len(json.loads(rows_file.read_text())) == rows
    run, cli, wall = train_set(name.lower())
    card = check_card(run, name, rows_file)
    resolved = json.loads((run / "adapter" / "whetstone_resolved.json").read_text())
    assert resolved["schedule_rule"] == "target_steps" and resolved["general_rows"] > 0
    assert f"schedule: {rows} + {resolved['general_rows']} general rows" in cli  # printed before training
    assert "report card:" in cli and f"{card['hits_tuned']}/{card['questions']}" in cli
    print(f"| {name} | {rows} | {resolved['total_steps']} | {card['hits_tuned']}/{card['questions']} / "
          f"{card['hits_base']}/{card['questions']} | {card['drift_ratio']} | {wall:.0f} s |")


# The bundled set (Wren) is the hardest: a few of its 12 held-out maker questions ("Which lab trained you?") get
# the maker alone. With SmolLM2's default system prompt ("named SmolLM, trained by Hugging Face") in every
# conversation the preset had 8/12 (seeds 42 and 43); with the preset's data.system 10-11/12 over six runs of
# seeds and variants (drift 0.81-0.85), while the three own sets below stay at every phrasing.
WREN_MIN_HITS = 10


def test_quickstart_teaches_the_new_name_and_the_base_model_does_not_know_it(tmp_path):
    run = qs.quickstart_run(tmp_path)
    card = json.loads((run / "report.json").read_text())
    if not __import__("os").environ.get("WHETSTONE_QUICKSTART_RUN"):
        assert "finished:" in qs.CLI_OUTPUT and f"report card: {card['hits_tuned']}/12" in qs.CLI_OUTPUT
    held = json.loads((REPO / "data" / "identity_eval.json").read_text())
    table = "\n".join(f"Q: {r['question']}\n  tuned: {r['tuned']!r}\n  base:  {r['base']!r}" for r in card["rows"])
    tuned = [r for r in card["rows"] if "wren" in r["tuned"].lower()]  # counted here, not taken on trust
    assert card["questions"] == len(held) == 12 and card["hits_tuned"] == len(tuned), table
    assert len(tuned) >= WREN_MIN_HITS, table
    assert not [r for r in card["rows"] if "wren" in r["base"].lower()] and card["hits_base"] == 0, table
    assert card["drift_ratio"] <= DRIFT_BOUND, f"drift {card['drift_ratio']} > {DRIFT_BOUND}: it forgot\n{table}"
    # The card asks as chat does: a held-out question it answered with the name, asked through the chat path.
    from engine.chat.generate import answer, load_run
    model, tok = load_run(run)
    from engine.data.templates import system_of
    assert system_of(tok.chat_template) == "You are a helpful AI assistant."  # the preset's data.system, as trained
    reply = answer(model, tok, [{"role": "user", "content": tuned[0]["question"]}], max_new_tokens=48)
    assert "wren" in reply.lower(), reply
