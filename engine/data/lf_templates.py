"""LLaMA-Factory's chat templates, as the text they write, and which Whetstone template writes the same.

LLaMA-Factory formats every conversation with a template of its own (template: llama3, qwen, ...). A
converted config must train on the same text, so each of their common templates is written out here
(its prefix, system, user and assistant slots, default system prompt) and rendered on reference
conversations next to Whetstone's built-ins and the model's own chat template: the one that renders
exactly the same is chosen, 'auto' first (the model's own template); when none does, the nearest is named
with what differs. Light: stdlib + jinja2 (through engine.data.light_tokenizer for the model's template).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from engine.data import templates

CHATML_USER = "<|im_start|>user\n{c}<|im_end|>\n<|im_start|>assistant\n"


@dataclass(frozen=True)
class LFTemplate:
    user: str                      # {c}: the message; {bos} / {eos}: the tokenizer's tokens
    assistant: str
    system: str = "{c}"
    prefix: str = ""
    default_system: str = ""
    system_in_first_user: bool = False  # their Llama2Template: the system text opens the first user message
    nearest: str = ""              # the Whetstone built-in of the same family, when none renders the same


LF_TEMPLATES: dict[str, LFTemplate] = {
    "chatml": LFTemplate(CHATML_USER, "{c}<|im_end|>\n", "<|im_start|>system\n{c}<|im_end|>\n", nearest="chatml"),
    "qwen": LFTemplate(CHATML_USER, "{c}<|im_end|>\n", "<|im_start|>system\n{c}<|im_end|>\n",
                       default_system="You are Qwen, created by Alibaba Cloud. You are a helpful assistant.",
                       nearest="qwen"),
    "qwen2_vl": LFTemplate(CHATML_USER, "{c}<|im_end|>\n", "<|im_start|>system\n{c}<|im_end|>\n",
                           default_system="You are a helpful assistant.", nearest="qwen"),
    "qwen3_nothink": LFTemplate(CHATML_USER, "{c}<|im_end|>\n", "<|im_start|>system\n{c}<|im_end|>\n",
                                nearest="chatml"),
    "llama3": LFTemplate("<|start_header_id|>user<|end_header_id|>\n\n{c}<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\n", "{c}<|eot_id|>",
                         "<|start_header_id|>system<|end_header_id|>\n\n{c}<|eot_id|>", prefix="{bos}",
                         nearest="llama3"),
    "mistral": LFTemplate("[INST] {c}[/INST]", " {c}{eos}", "{c}\n\n", prefix="{bos}", system_in_first_user=True,
                          nearest="mistral"),
    "gemma": LFTemplate("<start_of_turn>user\n{c}<end_of_turn>\n<start_of_turn>model\n", "{c}<end_of_turn>\n",
                        "{c}\n\n", prefix="{bos}", system_in_first_user=True, nearest="gemma"),
    "phi": LFTemplate("<|user|>\n{c}<|end|>\n<|assistant|>\n", "{c}<|end|>\n", "<|system|>\n{c}<|end|>\n",
                      nearest="phi"),
    "alpaca": LFTemplate("### Instruction:\n{c}\n\n### Response:\n", "{c}{eos}\n\n",
                         default_system="Below is an instruction that describes a task. Write a response that "
                                        "appropriately completes the request.\n\n", nearest="alpaca"),
    "default": LFTemplate("Human: {c}{eos}\nAssistant:", "{c}{eos}\n", "System: {c}{eos}\n"),
    "empty": LFTemplate("{c}", "{c}"),
}

# Conversations every candidate renders: with a system prompt and two turns, and without one.
REFERENCE = (
    [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"},
     {"role": "user", "content": "U2"}, {"role": "assistant", "content": "A2"}],
    [{"role": "user", "content": "U1"}, {"role": "assistant", "content": "A1"}],
)


def render_lf(t: LFTemplate, messages: list[dict], bos: str, eos: str) -> str:
    """What LLaMA-Factory writes for a conversation with template t."""
    fill = lambda slot, c="": slot.replace("{c}", c).replace("{bos}", bos).replace("{eos}", eos)  # noqa: E731
    msgs = list(messages)
    system = msgs.pop(0)["content"] if msgs and msgs[0]["role"] == "system" else t.default_system
    out = fill(t.prefix)
    if system and not t.system_in_first_user:
        out += fill(t.system, system)
    for i, m in enumerate(msgs):
        if m["role"] == "user":
            lead = fill(t.system, system) if (i == 0 and system and t.system_in_first_user) else ""
            out += fill(t.user, lead + m["content"])
        else:
            out += fill(t.assistant, m["content"])
    return out


def _render_jinja(template: str, messages: list[dict], special: dict) -> Optional[str]:
    from engine.data.light_tokenizer import _compile
    try:
        return _compile(template).render(messages=messages, add_generation_prompt=False, tools=None, **special)
    except Exception:  # a template that refuses a reference conversation is not the same template
        return None


@dataclass
class TemplateChoice:
    name: str                 # what data.template becomes
    same: bool                # renders exactly as LLaMA-Factory's template does
    note: str                 # what was compared, and what differs
    system: str = ""          # what data.system becomes: their default system prompt, where ours needs it


def _first_difference(a: str, b: str) -> str:
    i = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return f"theirs {a[max(0, i - 20):i + 40]!r} vs {b[max(0, i - 20):i + 40]!r}"


def choose(lf_name: str, model_dir: Optional[Path]) -> Optional[TemplateChoice]:
    """The Whetstone template that writes what LLaMA-Factory's `lf_name` writes: 'auto' when the model's own
    chat template (read from model_dir) renders the same, else an identical built-in, else the nearest one with
    the difference named; None when the name is not one of LF_TEMPLATES."""
    t = LF_TEMPLATES.get(lf_name)
    if t is None:
        return None
    own, special = None, {"bos_token": "<s>", "eos_token": "</s>"}
    if model_dir is not None:
        from engine.data import light_tokenizer
        try:
            tok = light_tokenizer.load(model_dir)
            own = tok.chat_template
            special = {k: tok.special.get(k) or v for k, v in special.items()}
        except (OSError, ValueError):
            pass
    theirs = [render_lf(t, m, special["bos_token"], special["eos_token"]) for m in REFERENCE]
    candidates = ([("auto", own)] if own else []) + list(templates.BUILTIN.items())
    for system in ("", t.default_system) if t.default_system else ("",):  # a plain match first
        for name, text in candidates:
            if [_render_jinja(templates.with_system(text, system), m, special) for m in REFERENCE] == theirs:
                what = "the model's own chat template" if name == "auto" else f"Whetstone's {name!r}"
                with_ = f" with data.system {system!r} (their default system prompt)" if system else ""
                return TemplateChoice(name, True, f"template {lf_name!r} -> {name!r}{with_}: {what} writes exactly "
                                                  "the same text", system)
    if not t.nearest:
        return TemplateChoice("", False, f"template {lf_name!r}: no Whetstone template writes the same text")
    mine = [_render_jinja(templates.BUILTIN[t.nearest], m, special) or "" for m in REFERENCE]
    diff = next(_first_difference(a, b) for a, b in zip(theirs, mine) if a != b)
    return TemplateChoice(t.nearest, False, f"template {lf_name!r} -> {t.nearest!r}, which differs: {diff}")
