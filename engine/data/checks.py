"""Every row of a dataset checked and tokenised, before training: what the pipeline trains on and what
the Dataset tab shows come from this one pass, and the check Start runs before a run folder is made.

Light: it takes any tokenizer with the calls data.encode uses (the worker's transformers
tokenizer, or data.light_tokenizer in the UI process).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.config.method import PAIR_STAGES
from engine.config.rl import RL_STAGES
from engine.data import encode, formats
from engine.data.files import DataError, SourceRow, where
from engine.data import sources
from engine.data.sources import Loaded


@dataclass
class Item:
    """One row: its canonical example, or the problem with it; and its tokens when it has an example."""
    row: SourceRow
    where: str
    example: formats.Example | None = None
    problem: formats.RowProblem | None = None
    encoded: encode.Encoded | None = None

    @property
    def message(self) -> str:
        return f"{self.where}: {self.problem.message}" if self.problem else ""


def conversation_of(example: formats.Example) -> tuple[list[dict], list | None]:
    """The messages a row trains on (a preference row shows its prompt and chosen answer)."""
    if isinstance(example, formats.Preference):
        return example.prompt_messages + [{"role": "assistant", "content": example.chosen}], None
    return example.messages, example.tools


def encode_example(tokenizer, example: formats.Example, cutoff_len: int) -> encode.Encoded:
    if isinstance(example, formats.Text):
        return encode.encode_text(tokenizer, example.text, cutoff_len)
    messages, tools = conversation_of(example)
    return encode.encode_messages(tokenizer, messages, cutoff_len, tools)


def examine(loaded: Loaded, tokenizer=None, cutoff_len: int = 1024, limit: int | None = None) -> list[Item]:
    """Convert (and, given a tokenizer, tokenise) the first `limit` rows (all when None)."""
    items = []
    for r in loaded.rows[:limit]:
        it = Item(r, where(loaded.source, r))
        got = formats.convert(r.data, loaded.spec)
        if isinstance(got, formats.RowProblem):
            it.problem = got
        else:
            it.example = got
            if tokenizer is not None:
                try:
                    it.encoded = encode_example(tokenizer, got, cutoff_len)
                except encode.EncodeError as e:
                    it.problem = formats.RowProblem("invalid", str(e))
        items.append(it)
    return items


@dataclass
class Counts:
    """What a check pass found, per dataset or summed over a run."""
    rows: int = 0
    empty: int = 0
    missing: int = 0
    invalid: int = 0
    ended_on_user: int = 0
    over_cutoff: int = 0
    problems: list[str] = field(default_factory=list)  # the first few messages, each naming its row

    def add(self, items: list[Item], cutoff_len: int, keep: int = 20) -> "Counts":
        for it in items:
            self.rows += 1
            if it.problem:
                setattr(self, it.problem.kind, getattr(self, it.problem.kind) + 1)
                if len(self.problems) < keep:
                    self.problems.append(it.message)
                continue
            if isinstance(it.example, formats.Conversation) and it.example.ended_on_user:
                self.ended_on_user += 1
            if it.encoded is not None and it.encoded.length > cutoff_len:
                self.over_cutoff += 1
        return self

    def merge(self, other: "Counts") -> "Counts":
        """Add another pass's counts (another dataset of the same run) to these."""
        for f in ("rows", "empty", "missing", "invalid", "ended_on_user", "over_cutoff"):
            setattr(self, f, getattr(self, f) + getattr(other, f))
        self.problems += other.problems
        return self

    @property
    def bad(self) -> int:
        return self.empty + self.missing + self.invalid

    def summary(self, cutoff_len: int) -> str:
        parts = [f"{self.rows} rows"]
        for n, what in ((self.empty, "empty"), (self.missing, "missing a needed field"), (self.invalid, "malformed"),
                        (self.over_cutoff, f"longer than cutoff_len={cutoff_len}"),
                        (self.ended_on_user, "ending on a user turn (that last turn is not trained on)")):
            if n:
                parts.append(f"{n} {what}")
        return ", ".join(parts)


def bad_rows_error(counts: Counts, source: str, role: str = "training") -> DataError:
    more = f" (and {counts.bad - len(counts.problems)} more)" if counts.bad > len(counts.problems) else ""
    return DataError(f"{counts.bad} of {counts.rows} {role} rows in {source} cannot be used{more}:\n  "
                     + "\n  ".join(counts.problems[:10])
                     + "\nFix them, or set data.on_bad_rows to drop to train without them (they are counted in "
                     "the data report)")


def stage_error(loaded: Loaded, stage: str) -> DataError | None:
    """A dataset whose format the training stage cannot use."""
    if loaded.spec.format == "preference" and stage in ("sft", "pt"):
        return DataError(f"{loaded.source}: holds preference pairs (prompt / chosen / rejected), which train the "
                         f"preference stages (dpo, orpo, simpo, kto, rm), not {stage}; pick a conversation dataset, "
                         "or set data.format if the format was misdetected")
    if loaded.spec.format != "preference" and stage in PAIR_STAGES:
        return DataError(f"{loaded.source}: is {loaded.spec.format}, but the {stage} stage trains on preference "
                         "pairs (prompt / chosen / rejected)")
    if loaded.spec.format == "text" and stage in RL_STAGES:
        return DataError(f"{loaded.source}: is plain text, which has no prompts; the {stage} stage samples "
                         "replies to prompts: pick a conversation or preference dataset (alpaca, sharegpt, "
                         "messages, preference)")
    return None


def before_launch(cfg) -> list[str]:
    """Every dataset problem that would fail the run, found without a tokenizer (seconds, no torch): the
    CLI and the UI refuse to start on these, so no run folder is made for a run that cannot train."""
    out = []
    d = cfg.data
    for role, names in (("training", d.datasets), ("eval", d.eval_datasets)):
        for name in names:
            try:
                loaded = sources.load(name, d.format, d.columns)
            except DataError as e:
                out.append(str(e))
                continue
            err = stage_error(loaded, cfg.method.stage)
            if err:
                out.append(str(err))
                continue
            counts = Counts().add(examine(loaded, None, d.cutoff_len, d.max_samples), d.cutoff_len)
            if counts.bad and d.on_bad_rows == "fail":
                out.append(str(bad_rows_error(counts, loaded.source, role)))
            elif cfg.method.stage in RL_STAGES:  # each row must also give a prompt (and a reference, if needed)
                from engine.data import prompts
                out += prompts.problems(cfg, loaded, role)
    return out
