"""Two run-config sections about what a run keeps and how it is judged. Light: stdlib only.

- retain: keep what the model already knew while it learns narrow data (an identity set): rows of
  general behaviour are mixed into training. A section of its own, so it survives a swap of
  data.datasets (the Dataset dropdown or `--set data.datasets=[...]`).
- report: the report card at the end of an SFT run: held-out questions answered greedily by the tuned
  model and the base, hits on a target (e.g. the new name), and the drift ratio on general prompts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from engine.config.schema import F

RetainMethod = Literal["none", "replay", "mix"]


@dataclass
class RetainConfig:
    method: RetainMethod = F(
        "none", "Keep general behaviour while training on narrow data. replay: the base model's own greedy answers "
                "to the prompts of retain.dataset are mixed into training, so it keeps answering as it did; mix: "
                "retain.dataset's rows, with their written answers, are mixed in; none: your data alone.",
        widget="radio", label="Keep what the model knew")
    dataset: str = F("alpaca_demo", "General instruction data for retain.method: its prompts (replay) or its rows "
                                    "(mix). A bundled name, a file or a hub id.", label="General data")
    share: float = F(0.5, "General rows mixed in per row of your data (0.5 = one for every two), at most the rows "
                          "retain.dataset has.", min=0.0, max=10.0, label="General share")
    max_new_tokens: int = F(96, "replay: the longest base answer generated per prompt, in tokens (generated once "
                                "per model and cached).", min=8, max=4096)


@dataclass
class ReportConfig:
    held_out: str = F("auto", "Held-out questions answered at the end of an SFT run, by the tuned model and the base: "
                              "'auto' = data.eval_datasets, else a '<name>_eval' file beside the first training "
                              "dataset (the identity helper writes one); 'none' = no report card; or a dataset name "
                              "or file.", label="Held-out questions")
    target: str = F("", "Text a good answer contains (case-insensitive), e.g. the assistant's new name: answers that "
                        "contain it are hits. Empty = the name every reference answer of the held-out file shares.",
                    label="Target text")
    max_questions: int = F(32, "Answer at most this many held-out questions.", min=1, max=100000)
    max_new_tokens: int = F(48, "The longest answer per held-out question, in tokens.", min=1, max=4096)
    drift: bool = F(True, "Measure the drift ratio: the tuned model's mean token loss on the base model's own greedy "
                          "answers to bundled general prompts (data/reference/general_prompts.json), over the base's "
                          "(1.0 = unchanged behaviour).")
    drift_tokens: int = F(96, "The longest base answer per general prompt for the drift ratio, in tokens (generated "
                              "once per model and cached).", min=4, max=4096)


def problems(cfg, check_files: bool = True, root=None) -> list[str]:
    """The retain and report sections against the files they name (run config's semantic check)."""
    if not check_files:
        return []
    from engine.data import names  # resolves bundled names and checks local paths
    out = []
    if cfg.retain.method != "none" and (err := names.problem(cfg.retain.dataset, root=root)):
        out.append(f"retain.dataset: {err}")
    if cfg.report.held_out not in ("auto", "none") and (err := names.problem(cfg.report.held_out, root=root)):
        out.append(f"report.held_out: {err} (or write auto / none)")
    return out
