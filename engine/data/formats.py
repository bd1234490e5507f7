"""Dataset formats: detecting them from the columns, and turning each row into its canonical form.

Light module (stdlib only). Formats and the canonical form each becomes:
- alpaca: instruction / input / output, optional system and history -> a conversation
- sharegpt: conversations of {from, value} turns with roles human, gpt, system, function_call,
  observation, plus an optional tools column -> a conversation
- messages: OpenAI-style {role, content} turns (user, assistant, system, tool) -> a conversation
- preference: prompt (or instruction/input, or sharegpt turns) with chosen / rejected ->
  {"prompt_messages": [...], "chosen": str, "rejected": str}, for the preference stages
- text: plain text for continued pre-training -> a string

A column mapping (data.columns, or the `columns` of a LLaMA-Factory dataset_info.json entry) maps
canonical names to a file's own. Every problem is a RowProblem naming the row and what to do.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Union

FORMATS = ("alpaca", "sharegpt", "messages", "preference", "text")

# Canonical column names of each format (what data.columns maps from).
COLUMNS = {
    "alpaca": ("instruction", "input", "output", "system", "history"),
    "sharegpt": ("conversations", "system", "tools"),
    "messages": ("messages", "tools"),
    "preference": ("prompt", "instruction", "input", "conversations", "system", "chosen", "rejected"),
    "text": ("text",),
}

SHAREGPT_TAGS = {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "observation_tag": "observation", "function_tag": "function_call", "system_tag": "system"}
MESSAGES_TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}


@dataclass(frozen=True)
class FormatSpec:
    """How to read one dataset: its format, column mapping (canonical -> file column) and role tags."""
    format: str
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    def col(self, name: str) -> str:
        return self.columns.get(name, name)

    def tag(self, name: str) -> str:
        base = MESSAGES_TAGS if self.format == "messages" else SHAREGPT_TAGS
        return self.tags.get(name, base[name])


@dataclass(frozen=True)
class Conversation:
    messages: list[dict]
    tools: Any = None            # tool definitions (a list of JSON schemas) when the row has them
    ended_on_user: bool = False  # trailing user / tool turns were removed: nothing to learn from them


@dataclass(frozen=True)
class Preference:
    prompt_messages: list[dict]
    chosen: str
    rejected: str

    def as_dict(self) -> dict:
        return {"prompt_messages": self.prompt_messages, "chosen": self.chosen, "rejected": self.rejected}


@dataclass(frozen=True)
class Text:
    text: str


Example = Union[Conversation, Preference, Text]


@dataclass(frozen=True)
class RowProblem:
    kind: str      # 'empty' (nothing in the row), 'missing' (a needed field absent or blank), 'invalid'
    message: str   # names the field and what to do; the caller prefixes the row


class _Bad(Exception):
    def __init__(self, kind: str, message: str):
        self.problem = RowProblem(kind, message)


def _s(v: Any) -> str:
    return "" if v is None else str(v)


def _blank(v: Any) -> bool:
    return v is None or (isinstance(v, str) and not v.strip())


def _maybe_json(v: Any) -> Any:
    """CSV cells hold nested lists as JSON text."""
    if isinstance(v, str) and v.strip()[:1] in ("[", "{"):
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    return v


def _turn_keys(rows: list[dict], column: str) -> set[str]:
    for r in rows:
        turns = _maybe_json(r.get(column))
        if isinstance(turns, list) and turns and isinstance(turns[0], dict):
            return set(turns[0])
    return set()


def detect(rows: list[dict], columns: dict[str, str] | None = None) -> str | None:
    """The format of these rows (from their columns, through the mapping), or None when it cannot tell."""
    m = columns or {}
    keys = set().union(*(r.keys() for r in rows[:100])) if rows else set()
    has = lambda name: m.get(name, name) in keys  # noqa: E731
    if has("chosen") and has("rejected"):
        return "preference"
    for col in ("conversations", "messages"):
        if has(col):
            tk = _turn_keys(rows[:100], m.get(col, col))
            if "from" in tk or "value" in tk:
                return "sharegpt"
            if "role" in tk or "content" in tk:
                return "messages"
            return "sharegpt" if col == "conversations" else "messages"
    if has("instruction") and has("output"):
        return "alpaca"
    if has("text"):
        return "text"
    return None


def cannot_detect(keys: list[str]) -> str:
    return (f"cannot tell the format from its columns {keys}; expected alpaca (instruction/input/output), "
            "sharegpt (conversations of from/value), messages (role/content), preference (prompt/chosen/"
            "rejected) or text. Set data.format and map odd column names with data.columns "
            "(e.g. {instruction: question, output: answer})")


def convert(row: dict, spec: FormatSpec) -> Example | RowProblem:
    """One row in its canonical form, or the problem with it."""
    if not any(not _blank(v) and v != [] for v in row.values()):
        return RowProblem("empty", "is empty: every field is blank")
    try:
        if spec.format == "alpaca":
            return _alpaca(row, spec)
        if spec.format in ("sharegpt", "messages"):
            return _conversation(row, spec)
        if spec.format == "preference":
            return _preference(row, spec)
        if spec.format == "text":
            t = row.get(spec.col("text"))
            if spec.col("text") not in row:
                raise _Bad("missing", f"has no `{spec.col('text')}` field")
            if _blank(t):
                raise _Bad("missing", f"`{spec.col('text')}` is empty")
            return Text(_s(t))
    except _Bad as b:
        return b.problem
    except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:
        # A nesting no check above foresaw (JSON allows any): still this row's problem, named, never a crash.
        return RowProblem("invalid", f"has fields of a shape the {spec.format} format does not use ({e}); "
                                     f"compare the row with the format's description in data/README.md")
    raise ValueError(f"unknown format {spec.format!r}")


def _system(row: dict, spec: FormatSpec) -> list[dict]:
    s = row.get(spec.col("system"))
    return [{"role": "system", "content": _s(s)}] if not _blank(s) else []


def _alpaca_prompt(row: dict, spec: FormatSpec) -> str:
    instr, inp = _s(row.get(spec.col("instruction"))), _s(row.get(spec.col("input")))
    if not (instr.strip() or inp.strip()):
        raise _Bad("missing", f"`{spec.col('instruction')}` and `{spec.col('input')}` are both empty; the row "
                              "has no question")
    if not inp.strip():
        return instr
    return f"{instr}\n\n{inp}" if instr.strip() else inp


def _history(row: dict, spec: FormatSpec) -> list[dict]:
    out = []
    hist = _maybe_json(row.get(spec.col("history")))
    if _blank(hist) or hist == []:
        return out
    if not isinstance(hist, list):
        raise _Bad("invalid", f"`{spec.col('history')}` must be a list of [question, answer] pairs, got "
                              f"{type(hist).__name__} {str(hist)[:40]!r}")
    for k, pair in enumerate(hist):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise _Bad("invalid", f"`{spec.col('history')}` entry {k + 1} is not a [question, answer] pair")
        out += [{"role": "user", "content": _s(pair[0])}, {"role": "assistant", "content": _s(pair[1])}]
    return out


def _alpaca(row: dict, spec: FormatSpec) -> Conversation:
    out_col = spec.col("output")
    if out_col not in row:
        raise _Bad("missing", f"has no `{out_col}`; every alpaca row needs an answer to learn from")
    if _blank(row[out_col]):
        raise _Bad("missing", f"`{out_col}` is empty; every alpaca row needs an answer to learn from")
    msgs = _system(row, spec) + _history(row, spec)
    msgs += [{"role": "user", "content": _alpaca_prompt(row, spec)},
             {"role": "assistant", "content": _s(row[out_col])}]
    return Conversation(msgs)


def _turns(row: dict, spec: FormatSpec, column: str) -> list[dict]:
    """sharegpt / messages turns -> role/content messages, checking role names and order."""
    turns = _maybe_json(row.get(column))
    if column not in row:
        raise _Bad("missing", f"has no `{column}` column")
    if not isinstance(turns, list) or not turns:
        raise _Bad("missing", f"`{column}` is empty or not a list of turns")
    rt, ct = spec.tag("role_tag"), spec.tag("content_tag")
    user, bot = spec.tag("user_tag"), spec.tag("assistant_tag")
    obs, fn, sys_ = spec.tag("observation_tag"), spec.tag("function_tag"), spec.tag("system_tag")
    roles = {user: "user", obs: "tool", bot: "assistant", fn: "assistant", sys_: "system"}
    if spec.format == "messages":
        roles["tool"] = "tool"
    strict = spec.format == "sharegpt"
    msgs: list[dict] = []
    for j, t in enumerate(turns, start=1):
        if not isinstance(t, dict):
            raise _Bad("invalid", f"turn {j} of `{column}` is a {type(t).__name__}, not an object with "
                                  f"`{rt}` and `{ct}`")
        if rt not in t:
            other = "role" if rt == "from" else "from"
            hint = f" (it has `{other}`: set data.format to {'messages' if other == 'role' else 'sharegpt'})" \
                if other in t else ""
            raise _Bad("invalid", f"turn {j} has no `{rt}` field{hint}")
        role = t[rt]
        if not isinstance(role, str):
            raise _Bad("invalid", f"turn {j}: `{rt}` is a {type(role).__name__}, not a role name like {user} or {bot}")
        if role == sys_ and not msgs:
            if not _blank(t.get(ct)):
                msgs.append({"role": "system", "content": _s(t.get(ct))})
            continue
        if role not in roles or roles[role] == "system":
            side_user = not msgs or msgs[-1]["role"] == "assistant" or msgs[-1]["role"] == "system"
            if not strict:
                raise _Bad("invalid", f"turn {j}: role `{role}` is not one of {user}, {bot}, {sys_}, {obs}")
            raise _Bad("invalid", f"turn {j}: role `{role}` where `{user if side_user else bot}` was expected")
        mapped = roles[role]
        if strict:
            prev = msgs[-1]["role"] if msgs and msgs[-1]["role"] != "system" else None
            want_user = prev in (None, "assistant")
            if want_user != (mapped in ("user", "tool")):
                expected = f"{user}` or `{obs}" if want_user else f"{bot}` or `{fn}"
                raise _Bad("invalid", f"turn {j}: role `{role}` where `{expected}` was expected (turns must "
                                      "alternate between the user side and the assistant side)")
        content = t.get(ct)
        if mapped == "assistant" and _blank(content):
            raise _Bad("missing", f"turn {j} ({role}) has an empty `{ct}`; there is nothing to learn from it")
        msgs.append({"role": mapped, "content": _s(content) if not isinstance(content, (dict, list))
                     else json.dumps(content, ensure_ascii=False)})
    return msgs


def _conversation(row: dict, spec: FormatSpec) -> Conversation:
    column = spec.col("conversations" if spec.format == "sharegpt" else "messages")
    if column not in row:
        column = spec.col("messages" if spec.format == "sharegpt" else "conversations")
        if column not in row:
            raise _Bad("missing", f"has no `{spec.col('conversations' if spec.format == 'sharegpt' else 'messages')}`"
                                  " column of turns")
    msgs = _turns(row, spec, column)
    if not any(m["role"] == "system" for m in msgs):
        msgs = _system(row, spec) + msgs
    ended_on_user = False
    while msgs and msgs[-1]["role"] in ("user", "tool"):
        msgs.pop()
        ended_on_user = True
    if not any(m["role"] == "assistant" for m in msgs):
        raise _Bad("missing", "has no assistant reply to learn from")
    tools = _maybe_json(row.get(spec.col("tools")))
    if _blank(tools) or tools == []:
        tools = None
    elif isinstance(tools, dict):
        tools = [tools]
    elif not isinstance(tools, list):
        raise _Bad("invalid", f"`{spec.col('tools')}` is not a JSON list of tool definitions")
    return Conversation(msgs, tools, ended_on_user)


def _answer(v: Any, spec: FormatSpec, name: str) -> str:
    v = _maybe_json(v)
    if isinstance(v, dict):  # sharegpt-style {"from": "gpt", "value": "..."}
        v = v.get(spec.tag("content_tag"), v.get("content", v.get("value")))
    elif isinstance(v, list) and v and isinstance(v[-1], dict):  # a whole conversation: its last reply
        v = v[-1].get("content", v[-1].get("value"))
    if _blank(v):
        raise _Bad("missing", f"`{spec.col(name)}` is empty")
    return _s(v)


def _preference(row: dict, spec: FormatSpec) -> Preference:
    for name in ("chosen", "rejected"):
        if spec.col(name) not in row:
            raise _Bad("missing", f"has no `{spec.col(name)}`; preference rows need chosen and rejected answers")
    chosen, rejected = _answer(row[spec.col("chosen")], spec, "chosen"), _answer(row[spec.col("rejected")],
                                                                                 spec, "rejected")
    conv_col = next((spec.col(c) for c in ("conversations", "messages") if spec.col(c) in row), None)
    if spec.col("prompt") in row and not _blank(row[spec.col("prompt")]):
        prompt = _system(row, spec) + [{"role": "user", "content": _s(row[spec.col("prompt")])}]
    elif spec.col("instruction") in row:
        prompt = _system(row, spec) + [{"role": "user", "content": _alpaca_prompt(row, spec)}]
    elif conv_col:
        prompt = _turns(row, FormatSpec("messages" if "role" in _turn_keys([row], conv_col) else "sharegpt",
                                        spec.columns, spec.tags), conv_col)
        if not any(m["role"] == "system" for m in prompt):
            prompt = _system(row, spec) + prompt
    else:
        c = _maybe_json(row[spec.col("chosen")])
        if isinstance(c, list) and len(c) > 1:  # chosen / rejected are whole conversations
            col = spec.col("chosen")
            conv = _turns({col: c}, FormatSpec("messages" if isinstance(c[0], dict) and "role" in c[0]
                                               else "sharegpt"), col)
            prompt = conv[:-1]
        else:
            raise _Bad("missing", f"has no `{spec.col('prompt')}`; preference rows need the prompt the answers "
                                  "reply to")
    if not prompt or prompt[-1]["role"] not in ("user", "tool"):
        raise _Bad("invalid", "the prompt must end on a user turn (the chosen / rejected answers reply to it)")
    return Preference(prompt, chosen, rejected)
