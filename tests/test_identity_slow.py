"""The quickstart preset, run from the CLI as the README says, really teaches the embedded 135M model
a new identity (CPU, a few minutes), and the base model does not know it."""
import json

import pytest

import quickstart_run as qs
from conftest import REPO

pytestmark = pytest.mark.slow


def held_out_questions():
    rows = json.load(open(REPO / "data" / "identity_eval.json"))
    train = {r["instruction"].strip().lower() for r in json.load(open(REPO / "data" / "identity.json"))}
    qs_ = [r["instruction"] for r in rows]
    assert not {q.strip().lower() for q in qs_} & train, "held-out questions must not be in the training set"
    return qs_


def ask_all(run_dir):
    from engine.chat.generate import answer, load_run
    model, tok = load_run(run_dir)
    return [answer(model, tok, [{"role": "user", "content": q}], max_new_tokens=40) for q in held_out_questions()]


def test_quickstart_teaches_the_new_name_and_the_base_model_does_not_know_it(tmp_path):
    run = qs.quickstart_run(tmp_path)
    if not __import__("os").environ.get("WHETSTONE_QUICKSTART_RUN"):
        assert "finished:" in qs.CLI_OUTPUT
    tuned = ask_all(run)
    base = ask_all(None)
    tuned_hits = [a for a in tuned if "wren" in a.lower()]
    base_hits = [a for a in base if "wren" in a.lower()]
    report = "\n".join(f"tuned: {t!r}\nbase:  {b!r}" for t, b in zip(tuned, base))
    print(report)
    assert len(base_hits) == 0, report
    assert len(tuned_hits) == len(tuned), f"{len(tuned_hits)}/{len(tuned)}\n{report}"
