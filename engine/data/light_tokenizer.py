"""A tokenizer for the UI process: the `tokenizers` library plus Jinja2, no torch, no transformers.

It reads a model folder's tokenizer.json, tokenizer_config.json and chat template, and offers the
few calls data.encode needs (`apply_chat_template(..., tokenize=False)`, `tok(text)["input_ids"]`,
`eos_token_id`), rendering templates the way transformers does (sandboxed Jinja, trim_blocks,
lstrip_blocks, raise_exception / strftime_now / tojson). tests/test_data_light_tokenizer.py checks it
gives the same ids as the transformers tokenizer the worker loads.
"""
from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any


class NoTokenizer(FileNotFoundError):
    pass


def _token_str(v: Any) -> str | None:
    if isinstance(v, dict):
        return v.get("content")
    return v


@lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


class LightTokenizer:
    SPECIAL = ("bos_token", "eos_token", "unk_token", "pad_token")

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        path = folder / "tokenizer.json"
        if not path.is_file():
            raise NoTokenizer(f"{folder}: has no tokenizer.json (download the model first to see token counts)")
        from tokenizers import Tokenizer
        self.folder = folder
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        cfg_path = folder / "tokenizer_config.json"
        cfg = json.loads(cfg_path.read_text(encoding="utf-8")) if cfg_path.is_file() else {}
        self.special = {k: _token_str(cfg.get(k)) for k in self.SPECIAL}
        for k, v in self.special.items():
            setattr(self, k, v)
        template = cfg.get("chat_template")
        jinja = folder / "chat_template.jinja"
        if jinja.is_file():
            template = jinja.read_text(encoding="utf-8")
        if isinstance(template, list):  # named templates: the default one
            template = next((t["template"] for t in template if t.get("name") == "default"), None)
        self.chat_template: str | None = template

    @property
    def eos_token_id(self) -> int | None:
        return self._tok.token_to_id(self.eos_token) if self.eos_token else None

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict:
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False, add_generation_prompt: bool = False,
                            tools: list | None = None, **kwargs) -> str | list[int]:
        if not self.chat_template:
            raise ValueError("this tokenizer has no chat template")
        text = _compile(self.chat_template).render(
            messages=messages, tools=tools, add_generation_prompt=add_generation_prompt,
            **{k: v for k, v in self.special.items() if v is not None}, **kwargs)
        return self(text, add_special_tokens=False)["input_ids"] if tokenize else text

    def convert_ids_to_tokens(self, ids: list[int]) -> list[str]:
        return [self._tok.id_to_token(i) for i in ids]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self._tok.decode(ids, skip_special_tokens=skip_special_tokens)

    def __len__(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)


@lru_cache(maxsize=4)
def _cached(folder: str, mtime: float) -> LightTokenizer:
    return LightTokenizer(folder)


def load(folder: str | Path) -> LightTokenizer:
    """A light tokenizer for a model folder (cached; a fresh copy of the template state each call)."""
    p = Path(folder)
    tj = p / "tokenizer.json"
    base = _cached(str(p), tj.stat().st_mtime if tj.is_file() else 0.0) if tj.is_file() else LightTokenizer(p)
    tok = object.__new__(LightTokenizer)
    tok.__dict__.update(base.__dict__)  # shares the (read-only) tokenizers object; chat_template is per copy
    return tok
