"""Chat templates: the tokenizer's own by default; built-in Jinja templates for base models without
one. The template chosen for training is set on the tokenizer, which the training worker saves with the
adapter / model, so chat (tokenizer.apply_chat_template) renders prompts exactly as training did.

Light module (stdlib only): works on a transformers tokenizer and on data.light_tokenizer alike.
"""
from __future__ import annotations

import json

_SYS_INTO_FIRST_USER = (
    "{% set ns = namespace(system='') %}"
    "{% if messages and messages[0]['role'] == 'system' %}{% set ns.system = messages[0]['content'] %}"
    "{% set msgs = messages[1:] %}{% else %}{% set msgs = messages %}{% endif %}"
)

BUILTIN: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "alpaca": (
        "{% if messages and messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
        "{% for message in messages %}{% if message['role'] in ('user', 'tool') %}{{ '### Instruction:\n' + "
        "message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + "
        "message['content'] + eos_token + '\n\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
    "llama3": (
        "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + ('ipython' if message['role'] == "
        "'tool' else message['role']) + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    "qwen": (
        "{% if not messages or messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful "
        "assistant.<|im_end|>\n' }}{% endif %}{% for message in messages %}{% if message['role'] == 'tool' %}"
        "{{ '<|im_start|>user\n<tool_response>\n' + message['content'] + '\n</tool_response><|im_end|>\n' }}"
        "{% else %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endif %}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "mistral": (
        _SYS_INTO_FIRST_USER + "{{ bos_token }}{% for message in msgs %}{% if message['role'] == 'user' %}"
        "{{ '[INST] ' + (ns.system + '\n\n' if loop.first and ns.system else '') + message['content'] + "
        "' [/INST]' }}{% elif message['role'] == 'tool' %}{{ '[TOOL_RESULTS] ' + message['content'] + "
        "' [/TOOL_RESULTS]' }}{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}{% endfor %}"
    ),
    "gemma": (
        _SYS_INTO_FIRST_USER + "{{ bos_token }}{% for message in msgs %}{{ '<start_of_turn>' + ('model' if "
        "message['role'] == 'assistant' else 'user') + '\n' + (ns.system + '\n\n' if loop.first and ns.system "
        "else '') + message['content'] + '<end_of_turn>\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    "phi": (
        "{% for message in messages %}{{ '<|' + message['role'] + '|>\n' + message['content'] + '<|end|>\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
}

# Text that ends an assistant turn in each built-in template; chat must stop on it (besides eos).
STOP_STRINGS: dict[str, list[str]] = {
    "chatml": ["<|im_end|>"], "alpaca": ["{eos_token}"], "llama3": ["<|eot_id|>"], "qwen": ["<|im_end|>"],
    "mistral": ["{eos_token}"], "gemma": ["<end_of_turn>"], "phi": ["<|end|>"],
}


class TemplateError(ValueError):
    pass


def names() -> list[str]:
    return ["auto", *BUILTIN]


def apply(tokenizer, name: str, system: str = "") -> str:
    """Set the tokenizer's chat template to the chosen one, with `system` (data.system) as the system message of
    every conversation that has none; return the template text in use."""
    if name == "auto":
        if not tokenizer.chat_template:
            raise TemplateError("data.template: this tokenizer has no chat template of its own; choose a built-in "
                                f"one ({', '.join(BUILTIN)})")
    elif name not in BUILTIN:
        raise TemplateError(f"data.template: unknown template {name!r}; choose auto or one of {', '.join(BUILTIN)}")
    template = tokenizer.chat_template if name == "auto" else BUILTIN[name]
    tokenizer.chat_template = with_system(template, system)
    return tokenizer.chat_template


# data.system goes into the template itself, in front of it: the tokenizer saved with the weights carries it,
# so chat, the report card and every exported model (safetensors, GGUF) render prompts as training did.
_SYSTEM_START = "{#- whetstone data.system #}"
_SYSTEM_END = "{#- end whetstone data.system #}"


def with_system(template: str, system: str) -> str:
    """The template with `system` as the system message of every conversation without one ('' = the
    template's own default, whatever system text it adds itself)."""
    template = without_system(template)
    if not system.strip():
        return template
    literal = json.dumps(system, ensure_ascii=False)  # a Jinja string literal (same escapes as JSON)
    return (f"{_SYSTEM_START}{{%- if not messages or messages[0]['role'] != 'system' %}}"
            f"{{%- set messages = [{{'role': 'system', 'content': {literal}}}] + messages %}}{{%- endif %}}"
            f"{_SYSTEM_END}{template}")


def without_system(template: str | None) -> str | None:
    """The template as it was before with_system."""
    if template and template.startswith(_SYSTEM_START) and _SYSTEM_END in template:
        return template.split(_SYSTEM_END, 1)[1]
    return template


def system_of(template: str | None) -> str:
    """The data.system a template carries ('' for none)."""
    if not template or not template.startswith(_SYSTEM_START) or _SYSTEM_END not in template:
        return ""
    head = template.split(_SYSTEM_END, 1)[0]
    literal = head[head.index("'content': ") + len("'content': "): head.rindex("}]")]
    return json.loads(literal)


def builtin_name(template: str | None) -> str | None:
    """Which built-in a template text is, if any (data.system aside)."""
    template = without_system(template)
    return next((n for n, t in BUILTIN.items() if t == template), None)


def stop_strings(tokenizer) -> list[str]:
    """Strings that end a reply under the tokenizer's current template (its eos token included)."""
    eos = getattr(tokenizer, "eos_token", None) or ""
    name = builtin_name(tokenizer.chat_template)
    out = [s.replace("{eos_token}", eos) for s in STOP_STRINGS.get(name, [])]
    if eos and eos not in out:
        out.append(eos)
    return [s for s in out if s]


def stop_problem(tokenizer) -> str | None:
    """Why chat would not stop where training taught the model to, or None: a template's stop text that
    this tokenizer splits into several tokens cannot be a generation stop token."""
    name = builtin_name(tokenizer.chat_template)
    if name is None:
        return None
    eos = getattr(tokenizer, "eos_token", None) or ""
    for s in (x.replace("{eos_token}", eos) for x in STOP_STRINGS.get(name, [])):
        if s and len(tokenizer(s, add_special_tokens=False)["input_ids"]) != 1:
            return (f"template {name!r} ends replies with {s!r}, which this tokenizer splits into several tokens: "
                    "chat cannot stop on it, so replies may run on. Pick a template made for this model "
                    "(e.g. 'auto' or one whose stop token is in its vocabulary)")
    return None
