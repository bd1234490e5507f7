"""Which tokens end an assistant turn, for a tokenizer and its chat template.

Replies must stop where training taught them to: at the template's end-of-turn token (ChatML's
<|im_end|>, Llama 3's <|eot_id|>, Gemma's <end_of_turn>, ...) as well as at eos. The same list goes
into chat, into an export's generation_config.json, into the Ollama Modelfile and into GGUF
metadata, so every place a model is used stops at the same tokens.

Works on any tokenizer object and imports nothing heavy itself; it lives with the models that use it.
"""
from __future__ import annotations

from engine.data.templates import stop_strings as builtin_stops

# End-of-turn markers of common chat templates; a marker counts only when the tokenizer knows it as
# a single token and the chat template uses it.
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>", "<|end|>", "<|endoftext|>",
               "</s>", "<|eom_id|>")


def _single_id(tok, text: str) -> int | None:
    vocab = tok.get_vocab()
    return vocab.get(text)


def stop_strings(tok) -> list[str]:
    """The end-of-turn strings of this tokenizer's template: a built-in template's own stop text
    (engine.data.templates), eos, and every known end-of-turn marker the template uses."""
    template = tok.chat_template or ""
    out: list[str] = []
    for s in builtin_stops(tok):
        if _single_id(tok, s) is not None and s not in out:
            out.append(s)
    if tok.eos_token and tok.eos_token not in out:
        out.append(tok.eos_token)
    for marker in END_OF_TURN:
        if marker in template and marker not in out and _single_id(tok, marker) is not None:
            out.append(marker)
    return out


def stop_token_ids(tok) -> list[int]:
    """Token ids generation stops at: eos plus the template's end-of-turn tokens (no duplicates)."""
    ids: list[int] = []
    eos = tok.eos_token_id
    for i in (eos if isinstance(eos, list) else [eos]):
        if i is not None and i not in ids:
            ids.append(int(i))
    for s in stop_strings(tok):
        i = _single_id(tok, s)
        if i is not None and i not in ids:
            ids.append(int(i))
    return ids
