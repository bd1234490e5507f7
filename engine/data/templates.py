"""Chat templates: the tokenizer's own by default; built-in Jinja templates for base models without
one. The template chosen for training is saved with the adapter/model, so chat uses the same one."""
from __future__ import annotations

BUILTIN: dict[str, str] = {
    "chatml": (
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
        "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "alpaca": (
        "{% if messages[0]['role'] == 'system' %}{{ messages[0]['content'] + '\n\n' }}{% endif %}"
        "{% for message in messages %}{% if message['role'] == 'user' %}{{ '### Instruction:\n' + "
        "message['content'] + '\n\n' }}{% elif message['role'] == 'assistant' %}{{ '### Response:\n' + "
        "message['content'] + eos_token + '\n\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
}

# Text that ends an assistant turn, per built-in template (besides the tokenizer's eos token).
STOP_STRINGS: dict[str, list[str]] = {"chatml": ["<|im_end|>"], "alpaca": []}


class TemplateError(ValueError):
    pass


def names() -> list[str]:
    return ["auto", *BUILTIN]


def apply(tokenizer, name: str) -> str:
    """Set the tokenizer's chat template to the chosen one; return the template text in use."""
    if name == "auto":
        if not tokenizer.chat_template:
            raise TemplateError("data.template: this tokenizer has no chat template of its own; choose a built-in "
                                f"one ({', '.join(BUILTIN)})")
        return tokenizer.chat_template
    if name not in BUILTIN:
        raise TemplateError(f"data.template: unknown template {name!r}; choose auto or one of {', '.join(BUILTIN)}")
    tokenizer.chat_template = BUILTIN[name]
    return tokenizer.chat_template
