"""Evaluate: a user scores a run on held-out questions: loss, perplexity, and the tuned and base
answers beside the references with ROUGE-L, saved in the run folder."""
from __future__ import annotations

import json
import time

import pytest

from conftest import REPO, run_worker, write_config
from engine.runs.eval_client import EvalError, past_evals, progress, results, start_eval
from engine.evaluate.rouge import rouge_l


def test_rouge_l_counts_words_in_order():
    assert rouge_l("I am Wren, made by Whetstone Labs.", "I'm Wren, made by Whetstone Labs") == pytest.approx(
        6 / 7)  # 7 words each; 6 shared in order (i wren made by whetstone labs): P = R = F1 = 6/7
    assert rouge_l("Labs Whetstone", "Whetstone Labs") == 0.5
    assert rouge_l("", "anything") == 0.0 and rouge_l("same words", "Same words!") == 1.0


def test_evaluation_writes_loss_perplexity_and_scored_answers(tmp_path, tiny_model_dir):
    cfg = write_config(tmp_path, tiny_model_dir, train={"max_steps": 3, "save_steps": 3})
    assert run_worker(cfg).returncode == 0
    run = cfg.parent
    out, proc = start_eval(run, str(REPO / "data" / "identity_eval.json"), max_new_tokens=8, max_rows=3)
    assert proc.wait(600) == 0, (out / "stdout.log").read_text()[-2000:]
    assert progress(out).status == "finished" and progress(out).progress == 1.0
    res = results(out)
    s = res["summary"]
    assert s["rows"] == 3 and s["loss_tuned"] > 0 and s["perplexity_tuned"] == pytest.approx(
        2.718281828 ** s["loss_tuned"], rel=1e-3)
    assert s["loss_tuned"] < s["loss_base"], "training on identity lowers the loss on held-out identity answers"
    row = res["rows"][0]
    assert {"prompt", "reference", "tuned", "base", "rouge_l_tuned", "rouge_l_base"} <= set(row)
    assert "Wren" in row["reference"] and (out / "results.csv").is_file()
    assert past_evals(run) == [out]
    with pytest.raises(EvalError, match="dataset"):
        start_eval(run, "no-such-file.json")
