"""Loading a model to talk to (base, a run's adapter or model at its end or any checkpoint, or a
merged export) and answering with the chat template and stop tokens the run trained with, greedy or
sampled, whole or streamed token by token. Heavy (torch, transformers, peft).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import torch

from engine import config as C
from engine.config.chat import ChatSource, GenerationParams
from engine.data import templates
from engine.modeling import bottleneck, deep_prompts
from engine.modeling import load as models
from engine.modeling.stop_tokens import stop_token_ids
from engine.runs.store import run_config, weights_dir


@dataclass
class Loaded:
    """A model ready to chat: ``model`` answers as tuned; ``base`` as the base (see base_context)."""
    model: object
    tok: object
    source: ChatSource
    has_adapter: bool = False
    base_model: Optional[object] = None  # a separate base, loaded on demand for full / freeze runs
    base_path: str = ""
    cfg: Optional[C.RunConfig] = None
    stop_ids: list[int] = field(default_factory=list)


def _has_tokenizer(d: Path) -> bool:
    return (d / "tokenizer.json").is_file() or (d / "tokenizer_config.json").is_file()


def run_tokenizer(cfg: C.RunConfig, wdir: Path, run_dir: Path):
    """The tokenizer saved with the weights (it carries the training chat template); else the base's
    with the run's template applied, exactly as the training worker did."""
    for d in (wdir, run_dir / "adapter", run_dir / "model"):
        if _has_tokenizer(d):
            return models.load_tokenizer(cfg, str(d))
    tok = models.load_tokenizer(cfg)
    templates.apply(tok, cfg.data.template, cfg.data.system)
    return tok


def load_source(src: ChatSource, full_precision: bool = False) -> Loaded:
    """Load what a ChatSource names. full_precision loads the base unquantised (export merges)."""
    if src.kind == "base":
        cfg = C.replace(C.RunConfig(), "model.name_or_path", src.model)
        path = models.resolve_path(src.model)
        tok = models.load_tokenizer(cfg, path)
        m = models.load_model(cfg, path, quantize=False).eval()
        return Loaded(m, tok, src, base_path=path, cfg=cfg, stop_ids=stop_token_ids(tok))
    if src.kind == "merged":
        cfg = C.replace(C.RunConfig(), "model.name_or_path", src.model)
        tok = models.load_tokenizer(cfg, src.model)
        m = models.load_model(cfg, src.model, quantize=False).eval()
        return Loaded(m, tok, src, base_path=src.model, cfg=cfg, stop_ids=stop_token_ids(tok))
    run_dir = Path(src.run_dir)
    wdir = weights_dir(run_dir, src.checkpoint)
    if wdir is None:
        raise FileNotFoundError(src.problem() or f"no weights in {run_dir}")
    cfg = run_config(run_dir)
    tok = run_tokenizer(cfg, wdir, run_dir)
    base_path = models.resolve_path(cfg.model.name_or_path)
    if bottleneck.is_bottleneck_folder(wdir):  # adapter layers inserted into the base (no peft folder)
        m = bottleneck.load(models.load_model(cfg, base_path, quantize=False), wdir).eval()
        return Loaded(m, tok, src, base_path=base_path, cfg=cfg, stop_ids=stop_token_ids(tok))
    quantize = not full_precision and C.quantization(cfg) != "none"
    if deep_prompts.is_deep_prompt_folder(wdir):  # P-Tuning v2 prompts hooked into the chosen layers
        m = deep_prompts.load(models.load_model(cfg, base_path, quantize=quantize), wdir).eval()
        return Loaded(m, tok, src, base_path=base_path, cfg=cfg, stop_ids=stop_token_ids(tok))
    if deep_prompts.peft_prompt_type(wdir):  # peft prefix / prompt / P-tuning: see load_peft_prompt
        m = deep_prompts.load_peft_prompt(models.load_model(cfg, base_path, quantize=quantize).eval(), wdir)
        return Loaded(m.eval(), tok, src, base_path=base_path, cfg=cfg, stop_ids=stop_token_ids(tok))
    if (wdir / "adapter_config.json").is_file():
        from peft import PeftModel
        base = models.load_model(cfg, base_path, quantize=quantize)
        m = PeftModel.from_pretrained(base, str(wdir)).eval()
        return Loaded(m, tok, src, has_adapter=True, base_path=base_path, cfg=cfg, stop_ids=stop_token_ids(tok))
    m = models.load_model(cfg, str(wdir), quantize=False).eval()
    return Loaded(m, tok, src, base_path=base_path, cfg=cfg, stop_ids=stop_token_ids(tok))


class _BaseView:
    """Context manager: the model that answers as the base. For an adapter it is the same weights
    with the adapter switched off (no second copy in memory); for a full run, a separately loaded base."""

    def __init__(self, loaded: Loaded):
        self.l = loaded
        self._ctx = None

    def __enter__(self):
        if self.l.has_adapter:
            self._ctx = self.l.model.disable_adapter()
            self._ctx.__enter__()
            return self.l.model
        if self.l.source.kind != "run":
            return self.l.model
        if self.l.base_model is None:
            self.l.base_model = models.load_model(self.l.cfg, self.l.base_path, quantize=False).eval()
        return self.l.base_model

    def __exit__(self, *exc):
        if self._ctx is not None:
            self._ctx.__exit__(*exc)
        return False


def model_for(loaded: Loaded, variant: str):
    """A context manager yielding the model for variant 'tuned' or 'base'."""
    if variant == "base":
        return _BaseView(loaded)
    from contextlib import nullcontext
    return nullcontext(loaded.model)


def _inputs(model, tok, messages: list[dict]):
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    return {k: v.to(model.device) for k, v in enc.items()}


def _gen_kwargs(tok, stop_ids: list[int], p: GenerationParams) -> dict:
    kw = dict(max_new_tokens=p.max_new_tokens, eos_token_id=stop_ids or tok.eos_token_id,
              pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else (stop_ids or [0])[0],
              repetition_penalty=p.repetition_penalty)
    if p.temperature > 0:
        kw.update(do_sample=True, temperature=p.temperature, top_p=p.top_p)
    else:
        kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
    return kw


class _Cancel:
    """A stopping criterion that ends generation when the event is set (the Stop button)."""

    def __init__(self, event: threading.Event):
        self.event = event

    def __call__(self, input_ids, scores, **kw):
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def stream(model, tok, messages: list[dict], params: GenerationParams, stop_ids: list[int],
           cancel: Optional[threading.Event] = None, result: Optional[dict] = None) -> Iterator[str]:
    """Yield the reply piece by piece as tokens are generated. ``result`` receives new_tokens and
    the reason it stopped (eos, length, cancel)."""
    from transformers import StoppingCriteriaList, TextIteratorStreamer
    cancel = cancel or threading.Event()
    enc = _inputs(model, tok, with_system(messages, params.system_prompt))
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    box: dict = {}

    def work():
        try:
            with torch.no_grad():
                box["out"] = model.generate(**enc, streamer=streamer,
                                            stopping_criteria=StoppingCriteriaList([_Cancel(cancel)]),
                                            **_gen_kwargs(tok, stop_ids, params))
        except BaseException as e:  # surfaced in the caller's thread
            box["error"] = e
            streamer.end()

    t = threading.Thread(target=work, daemon=True)
    t.start()
    for piece in streamer:
        if piece:
            yield piece
    t.join()
    if "error" in box:
        raise box["error"]
    new = box["out"][0][enc["input_ids"].shape[1]:].tolist()
    if result is not None:
        result["new_tokens"] = len(new)
        result["token_ids"] = new
        result["stopped_by"] = ("cancel" if cancel.is_set() else
                                "eos" if new and new[-1] in stop_ids else "length")


def with_system(messages: list[dict], system_prompt: str) -> list[dict]:
    """The conversation with the system prompt in front (replacing one already there)."""
    msgs = [m for m in messages if m.get("role") != "system"] if system_prompt.strip() else list(messages)
    return ([{"role": "system", "content": system_prompt}] if system_prompt.strip() else []) + msgs


@torch.no_grad()
def answer(model, tok, messages: list[dict], max_new_tokens: int = 64, stop_ids: list[int] | None = None,
           **gen) -> str:
    """The whole reply at once (greedy unless gen says otherwise)."""
    enc = _inputs(model, tok, messages)
    gen.setdefault("do_sample", False)
    ids = stop_ids or stop_token_ids(tok)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                         eos_token_id=ids, **gen)
    return tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()


def load_run(run_dir: str | Path | None, base: str | None = None):
    """(model, tokenizer) for a run's final adapter or model; with run_dir None, the base model."""
    if run_dir is None:
        l = load_source(ChatSource("base", model=base or C.RunConfig().model.name_or_path))
    else:
        l = load_source(ChatSource("run", run_dir=str(run_dir)))
    return l.model, l.tok


@torch.no_grad()
def answer_batch(model, tok, conversations: list[list[dict]], max_new_tokens: int = 64,
                 stop_ids: list[int] | None = None, batch_size: int = 16) -> list[tuple[str, list[int]]]:
    """Greedy replies to many conversations at once, left-padded in batches: (text, generated token ids
    up to and including the first stop token) for each, in order. The report card and replay use it."""
    ids_stop = stop_ids or stop_token_ids(tok)
    pad = tok.pad_token_id if tok.pad_token_id is not None else ids_stop[0]
    prompts = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True, return_dict=True)["input_ids"]
               for c in conversations]
    out: list[tuple[str, list[int]]] = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in chunk], device=model.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], device=model.device)
        gen = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                             temperature=None, top_p=None, top_k=None, pad_token_id=pad, eos_token_id=ids_stop,
                             use_cache=True)
        for row in gen[:, width:].tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in ids_stop), len(row))
            new = row[:cut]
            out.append((tok.decode(new, skip_special_tokens=True).strip(), new))
    return out
