"""Messages -> input_ids and labels, with every prompt token masked (-100) so the loss is computed
on the assistant's replies only (and on the token that ends each reply, so the model learns to stop).

The conversation is rendered through the chat template once per assistant turn: the text before a
turn (rendered with the generation prompt) and after it give the turn's exact span. Each span is
tokenised on its own and the pieces are joined, so masks line up with tokens exactly.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

IGNORE = -100


class EncodeError(ValueError):
    pass


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    length: int = 0  # tokens before truncation

    @property
    def trained_tokens(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE)


def with_tools(template: str | None, messages: list[dict], tools: list | None) -> tuple[list[dict], dict]:
    """Tool definitions go to the template when it knows `tools`; otherwise they are written into the
    system message, so they are never silently dropped."""
    if not tools:
        return messages, {}
    if template and "tools" in template:
        return messages, {"tools": tools}
    text = "You can call these tools:\n" + json.dumps(tools, ensure_ascii=False)
    if messages and messages[0]["role"] == "system":
        return [{"role": "system", "content": messages[0]["content"] + "\n\n" + text}, *messages[1:]], {}
    return [{"role": "system", "content": text}, *messages], {}


def render(tokenizer, messages: list[dict], add_generation_prompt: bool, **kw) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kw)


def segments(tokenizer, messages: list[dict], tools: list | None = None) -> list[tuple[str, bool]]:
    """The rendered conversation cut into (text, trained) pieces."""
    messages, kw = with_tools(tokenizer.chat_template, messages, tools)
    out: list[tuple[str, bool]] = []
    done = ""
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:i], add_generation_prompt=True, **kw)
        after = render(tokenizer, messages[: i + 1], add_generation_prompt=False, **kw)
        if not before.startswith(done) or not after.startswith(before):
            raise EncodeError("the chat template renders earlier turns differently once later turns are added; "
                              "choose another data.template")
        out.append((before[len(done):], False))
        out.append((after[len(before):], True))
        done = after
    full = render(tokenizer, messages, add_generation_prompt=False, **kw)
    if full.startswith(done) and len(full) > len(done):
        out.append((full[len(done):], False))
    return [(t, trained) for t, trained in out if t]


def encode_messages(tokenizer, messages: list[dict], cutoff_len: int, tools: list | None = None) -> Encoded:
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in segments(tokenizer, messages, tools):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"]
        ids += piece
        labels += piece if trained else [IGNORE] * len(piece)
    truncated = len(ids) > cutoff_len
    return Encoded(ids[:cutoff_len], labels[:cutoff_len], truncated, len(ids))


def encode_text(tokenizer, text: str, cutoff_len: int) -> Encoded:
    """Plain text for continued pre-training: every token trained, ending with eos."""
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    truncated, length = len(ids) > cutoff_len, len(ids)
    ids = ids[:cutoff_len]
    return Encoded(ids, list(ids), truncated, length)
