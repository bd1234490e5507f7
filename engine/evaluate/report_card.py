"""The report card at the end of an SFT run: every held-out question answered greedily (the run's chat
template) by the tuned model and by the base, hits on the target (e.g. the new name mentioned), and the
drift ratio on general prompts (engine.evaluate.drift). Written to saves/<run>/report.json and as a
`report` event; the Train tab and the CLI show it. Heavy (torch); the training worker calls `write`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

from engine import config as C
from engine.data import held_out
from engine.runs.atomic import write_text
from engine.runs.events import EventWriter

REPORT_FILE = "report.json"


def build(cfg: C.RunConfig, model, tok, base_path: str, run_dir: Path, stop_ids: list[int]) -> Optional[dict]:
    """The report for a trained model (None when the run has no held-out questions)."""
    from engine.chat.generate import Loaded, answer_batch, model_for
    from engine.config.chat import ChatSource
    from engine.evaluate import drift
    from engine.modeling.adapters import is_adapter
    name = held_out.source(cfg)
    if name is None:
        return None
    t0 = time.time()
    pairs = held_out.questions(name, cfg.report.max_questions)
    if not pairs:
        return None
    target = cfg.report.target.strip() or held_out.infer_target([ref for _, ref in pairs])
    model.eval()
    peft_adapter = is_adapter(model) and hasattr(model, "disable_adapter")
    loaded = Loaded(model, tok, ChatSource("run", run_dir=str(run_dir)), has_adapter=peft_adapter,
                    base_path=base_path, cfg=cfg, stop_ids=stop_ids)
    prompts = [p for p, _ in pairs]
    n_tok = cfg.report.max_new_tokens
    tuned = [text for text, _ in answer_batch(model, tok, prompts, n_tok, stop_ids)]
    with model_for(loaded, "base") as base:  # the base's answers depend on nothing trained: cached
        based = [tok.decode(ids, skip_special_tokens=True).strip()
                 for ids in drift.base_answers(base, tok, prompts, n_tok, base_path, stop_ids)]
    rows = [{"question": p[-1]["content"], "reference": ref, "tuned": t, "base": b,
             "hit_tuned": held_out.hit(t, target), "hit_base": held_out.hit(b, target)}
            for (p, ref), t, b in zip(pairs, tuned, based)]
    report = {"held_out": name, "target": target,
              "target_from": "report.target" if cfg.report.target.strip() else "the reference answers",
              "questions": len(rows), "hits_tuned": sum(r["hit_tuned"] for r in rows),
              "hits_base": sum(r["hit_base"] for r in rows)}
    if cfg.report.drift:
        report.update(drift.measure(model, model_for(loaded, "base"), tok, base_path, drift.general_prompts(),
                                    cfg.report.drift_tokens, stop_ids=stop_ids))
    report["seconds"] = round(time.time() - t0, 1)
    report["rows"] = rows
    return report


def write(cfg: C.RunConfig, model, tok, base_path: str, run_dir: Path, events: EventWriter, step: int,
          stop_ids: list[int]) -> Optional[dict]:
    """Build the report, write report.json beside the weights and a `report` event with its summary."""
    report = build(cfg, model, tok, base_path, run_dir, stop_ids)
    if report is None:
        return None
    write_text(run_dir / REPORT_FILE, json.dumps(report, indent=1, ensure_ascii=False))
    events.write("report", step, **{k: v for k, v in report.items() if k != "rows"})
    return report
