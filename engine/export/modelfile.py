"""An Ollama Modelfile whose TEMPLATE and stop parameters match the model's chat template, so the
exported model stops where it was trained to (the commonest export complaint: endless replies).

Works from the template text and a tokenizer object; imports nothing heavy itself.
"""
from __future__ import annotations

import re

# Ollama (Go text/template) equivalents of common Jinja chat templates.
OLLAMA_TEMPLATES: dict[str, str] = {
    "chatml": (
        "{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
        "{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}"
        "<|im_start|>assistant\n"
    ),
    "llama3": (
        "{{- if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
        "{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    ),
    "gemma": (
        "{{- range .Messages }}<start_of_turn>{{ if eq .Role \"assistant\" }}model{{ else }}{{ .Role }}{{ end }}\n"
        "{{ .Content }}<end_of_turn>\n{{ end }}<start_of_turn>model\n"
    ),
    "phi3": (
        "{{- if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
        "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"
    ),
    "mistral": (
        "{{- range .Messages }}{{ if eq .Role \"user\" }}[INST] {{ if $.System }}{{ $.System }}\n\n{{ end }}"
        "{{ .Content }}[/INST]{{ else if eq .Role \"assistant\" }} {{ .Content }}</s>{{ end }}{{ end }}"
    ),
    "alpaca": (
        "{{- if .System }}{{ .System }}\n\n{{ end }}"
        "{{- range .Messages }}{{ if eq .Role \"user\" }}### Instruction:\n{{ .Content }}\n\n"
        "{{ else if eq .Role \"assistant\" }}### Response:\n{{ .Content }}</s>\n\n{{ end }}{{ end }}### Response:\n"
    ),
}

MARKERS = [("<|im_start|>", "chatml"), ("<|start_header_id|>", "llama3"), ("<start_of_turn>", "gemma"),
           ("<|assistant|>", "phi3"), ("[INST]", "mistral"), ("### Instruction", "alpaca")]


class ModelfileError(ValueError):
    pass


def template_family(chat_template: str) -> str | None:
    for marker, family in MARKERS:
        if marker in (chat_template or ""):
            return family
    return None


def default_system_prompt(tok) -> str:
    """The system prompt the chat template inserts when a conversation has none (as in training)."""
    text = tok.apply_chat_template([{"role": "user", "content": "\x01"}], tokenize=False,
                                   add_generation_prompt=False)
    m = re.match(r"^(?:<\|im_start\|>system\n)(.*?)<\|im_end\|>", text, re.S)
    if m:
        return m.group(1)
    m = re.match(r"^(?:<\|begin_of_text\|>)?<\|start_header_id\|>system<\|end_header_id\|>\n\n(.*?)<\|eot_id\|>",
                 text, re.S)
    return m.group(1) if m else ""


def _quote(s: str) -> str:
    if '"""' in s:
        raise ModelfileError("text contains a triple quote, which a Modelfile cannot hold")
    return f'"""{s}"""'


def modelfile(tok, from_: str, stops: list[str], params: dict | None = None) -> str:
    """The Modelfile text. ``from_`` is './model.gguf' or '.' (Ollama imports safetensors folders)."""
    family = template_family(tok.chat_template or "")
    if family is None:
        raise ModelfileError("no Ollama TEMPLATE is known for this chat template; write the Modelfile by hand")
    lines = [f"# Ollama Modelfile written by Whetstone. Create the model with: ollama create NAME -f Modelfile",
             f"FROM {from_}", f"TEMPLATE {_quote(OLLAMA_TEMPLATES[family])}"]
    system = default_system_prompt(tok)
    if system:
        lines.append(f"SYSTEM {_quote(system)}")
    for s in stops:
        lines.append(f'PARAMETER stop "{s}"')
    for k, v in (params or {}).items():
        lines.append(f"PARAMETER {k} {v}")
    return "\n".join(lines) + "\n"
