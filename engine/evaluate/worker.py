"""The evaluation worker: `python -m engine.evaluate --config saves/<run>/eval/<name>/config.yaml`
(settings: engine.config.evaluate).

For a run (final weights or a checkpoint) and a held-out file of conversations: the loss and
perplexity on the reference answers (the same response-only masking as training) for the tuned
model and the base, then a greedy answer from each to every prompt, scored against the reference
with ROUGE-L. Results go to the eval folder: results.json (summary + rows), results.csv, and
events.jsonl with progress. Heavy.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import time
import traceback
from pathlib import Path

from engine.config.chat import ChatSource
from engine.config.evaluate import EvalConfig, load
from engine.data.encode import IGNORE
from engine.evaluate.rouge import rouge_l
from engine.runs.events import EventWriter


def evaluate(ecfg: EvalConfig, out: Path, ev: EventWriter) -> dict:
    import torch

    from engine.chat.generate import answer, load_source, model_for
    from engine.data import checks, encode, formats, sources

    ev.status("loading", progress=0.02)
    loaded = load_source(ChatSource("run", run_dir=ecfg.run_dir, checkpoint=ecfg.checkpoint))
    tok, cutoff = loaded.tok, loaded.cfg.data.cutoff_len
    items = checks.examine(sources.load(ecfg.dataset), limit=ecfg.max_rows)
    convs = []
    for it in items:
        if it.example is None or isinstance(it.example, formats.Text):
            continue  # rows with a problem, or plain text, have no prompt / reference pair to score
        msgs = checks.conversation_of(it.example)[0]
        if any(m["role"] == "assistant" for m in msgs):
            convs.append(msgs)
    if not convs:
        raise ValueError(f"{ecfg.dataset}: no conversation with an assistant answer to evaluate against")
    results, sums = [], {"tuned": [0.0, 0], "base": [0.0, 0]}
    for i, msgs in enumerate(convs):
        last = max(j for j, m in enumerate(msgs) if m["role"] == "assistant")
        prompt, reference = msgs[:last], msgs[last]["content"]
        enc = encode.encode_messages(tok, msgs[: last + 1], cutoff)
        ids = torch.tensor([enc.input_ids], device=loaded.model.device)
        labels = torch.tensor([enc.labels], device=loaded.model.device)
        row = {"prompt": prompt[-1]["content"], "reference": reference}
        for variant in ("tuned", "base"):
            with model_for(loaded, variant) as model, torch.no_grad():
                logits = model(input_ids=ids).logits[0, :-1].float()
                target = labels[0, 1:]
                n = int((target != IGNORE).sum())
                loss_sum = float(torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE,
                                                                   reduction="sum")) if n else 0.0
                sums[variant][0] += loss_sum
                sums[variant][1] += n
                text = answer(model, tok, prompt, max_new_tokens=ecfg.max_new_tokens,
                              stop_ids=loaded.stop_ids)
            row[variant] = text
            row[f"rouge_l_{variant}"] = round(rouge_l(text, reference), 4)
            row[f"loss_{variant}"] = round(loss_sum / n, 4) if n else None
        results.append(row)
        ev.write("eval_row", i + 1, progress=(i + 1) / len(convs), rouge_l_tuned=row["rouge_l_tuned"],
                 rouge_l_base=row["rouge_l_base"])
    summary = {"rows": len(results), "dataset": ecfg.dataset, "checkpoint": ecfg.checkpoint or "final"}
    for variant in ("tuned", "base"):
        tot, n = sums[variant]
        loss = tot / n if n else float("nan")
        summary[f"loss_{variant}"] = round(loss, 4)
        summary[f"perplexity_{variant}"] = round(math.exp(loss), 3) if n else None
        summary[f"rouge_l_{variant}"] = round(sum(r[f"rouge_l_{variant}"] for r in results) / max(1, len(results)), 4)
    (out / "results.json").write_text(json.dumps({"summary": summary, "rows": results}, indent=1, ensure_ascii=False))
    with open(out / "results.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(results[0].keys()) if results else ["prompt"])
        w.writeheader()
        w.writerows(results)
    return summary


def run(config_path: Path) -> int:
    out = config_path.parent
    ev = EventWriter(out / "events.jsonl")
    try:
        ev.status("starting", progress=0.0, t0=time.time())
        ecfg = load(config_path)
        summary = evaluate(ecfg, out, ev)
        ev.status("finished", progress=1.0, **summary)
        return 0
    except BaseException as e:
        traceback.print_exc(file=sys.stderr)
        ev.error(f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e))
        ev.status("failed", reason=str(e))
        return 1
    finally:
        ev.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m engine.evaluate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, type=Path, help="saves/<run>/eval/<name>/config.yaml")
    return run(ap.parse_args(argv).config)

