"""Chat templates: every built-in renders a conversation so that each reply's span is exact, the UI's
light tokenizer gives the worker's ids, and a trained run's saved tokenizer (what chat loads) builds
the same prompt tokens training masked."""
from __future__ import annotations

import json

import pytest
import yaml

from engine.data import encode, light_tokenizer, templates

CONV = [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi ünïcode"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Again"},
        {"role": "assistant", "content": "Hello again."}]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


EXPECTED_FIRST_REPLY = {  # hand-written: what each template trains on for the first reply
    "chatml": "Hello!<|im_end|>\n", "qwen": "Hello!<|im_end|>\n", "llama3": "Hello!<|eot_id|>",
    "alpaca": "Hello!<|im_end|>\n\n", "mistral": " Hello!<|im_end|>", "gemma": "Hello!<end_of_turn>\n",
    "phi": "Hello!<|end|>\n",
}


@pytest.mark.parametrize("name", sorted(templates.BUILTIN))
def test_builtin_template_spans_and_stop(tok, name):
    templates.apply(tok, name)
    segs = encode.segments(tok, CONV)
    trained = [t for t, on in segs if on]
    assert trained[0] == EXPECTED_FIRST_REPLY[name]
    assert len(trained) == 2 and trained[1].startswith((" Hello again.", "Hello again."))
    full = tok.apply_chat_template(CONV, tokenize=False)
    assert "".join(t for t, _ in segs) == full
    assert "Be kind." in full  # the system prompt is never dropped
    stop = templates.stop_strings(tok)
    assert any(s in trained[0] for s in stop), (name, stop)  # the model is trained to emit its stop text


@pytest.mark.parametrize("name", ["auto", *sorted(templates.BUILTIN)])
def test_light_tokenizer_matches_the_worker_tokenizer(tiny_model_dir, tok, name):
    lt = light_tokenizer.load(tiny_model_dir)
    if name == "auto":
        tok = type(tok).from_pretrained(tiny_model_dir)
    templates.apply(tok, name)
    templates.apply(lt, name)
    a = encode.encode_messages(tok, CONV, 4096)
    b = encode.encode_messages(lt, CONV, 4096)
    assert (a.input_ids, a.labels) == (b.input_ids, b.labels)


def test_unknown_template_and_missing_template_are_explained(tiny_model_dir, tok):
    with pytest.raises(templates.TemplateError, match="choose auto or one of chatml, alpaca, llama3"):
        templates.apply(tok, "vicuna")
    base = light_tokenizer.load(tiny_model_dir)
    base.chat_template = None  # a base model without a template of its own
    with pytest.raises(templates.TemplateError, match="no chat template of its own; choose a built-in"):
        templates.apply(base, "auto")


SYSTEM = 'You are Wren, by "Whetstone" Labs. {{ not jinja }} %} \\ ünï 😀\nSecond line.'


@pytest.mark.parametrize("name", ["auto", "chatml", "mistral"])
def test_system_prompt_is_given_to_conversations_without_one(tiny_model_dir, name):
    """data.system: every conversation without a system message gets it, rendered verbatim whatever it holds
    (quotes, braces, backslashes, emoji); one with its own keeps its own; set again, it replaces itself."""
    from engine.export.modelfile import default_system_prompt
    tok = light_tokenizer.load(tiny_model_dir)
    templates.apply(tok, name)
    plain = tok.apply_chat_template(CONV[1:3], tokenize=False)
    templates.apply(tok, name, "first")
    templates.apply(tok, name, SYSTEM)
    given = tok.apply_chat_template(CONV[1:3], tokenize=False)
    assert SYSTEM in given and "first" not in given and given != plain
    assert tok.apply_chat_template(CONV, tokenize=False).count("Wren") == 0  # "Be kind." is kept instead
    assert templates.system_of(tok.chat_template) == SYSTEM
    assert templates.builtin_name(tok.chat_template) == (None if name == "auto" else name)
    if name == "chatml":  # an Ollama Modelfile's SYSTEM line comes from the template, so it is data.system too
        assert default_system_prompt(tok) == SYSTEM
    templates.apply(tok, name, "")
    assert tok.apply_chat_template(CONV[1:3], tokenize=False) == plain and templates.system_of(tok.chat_template) == ""


def test_training_and_chat_use_the_same_template(make_config):
    """Train one step with a non-default template; the tokenizer saved with the adapter (what
    engine.chat.generate.answer feeds to apply_chat_template) builds exactly the prompt training masked."""
    from transformers import AutoTokenizer

    from conftest import run_worker
    from engine import config as C
    from engine.data import pipeline
    cfg_path = make_config(data={"datasets": ["identity"], "template": "llama3", "cutoff_len": 128, "max_samples": 8,
                                 "system": SYSTEM}, train={"max_steps": 1, "batch_size": 2, "save_steps": 50})
    proc = run_worker(cfg_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    adapter = cfg_path.parent / "adapter"
    chat_tok = AutoTokenizer.from_pretrained(adapter)
    assert templates.without_system(chat_tok.chat_template) == templates.BUILTIN["llama3"]
    assert templates.system_of(chat_tok.chat_template) == SYSTEM  # data.system travels with the weights
    saved = C.load(adapter / "whetstone_config.yaml", check_files=False)
    assert saved.data.template == "llama3" and saved.data.system == SYSTEM
    # what training saw for row 1 ...
    train_tok = AutoTokenizer.from_pretrained(yaml.safe_load(cfg_path.read_text())["model"]["name_or_path"])
    templates.apply(train_tok, "llama3", SYSTEM)
    ex = pipeline.build(saved, train_tok)[0][0]
    prompt_len = next(i for i, l in enumerate(ex["labels"]) if l != -100)
    # ... and what chat builds for the same question (engine.chat.generate's answer())
    row = json.loads(open("data/identity.json").read())[0]
    chat_ids = chat_tok.apply_chat_template([{"role": "user", "content": row["instruction"]}],
                                            add_generation_prompt=True, return_dict=True)["input_ids"]
    assert list(chat_ids) == ex["input_ids"][:prompt_len]
    assert SYSTEM in chat_tok.decode(ex["input_ids"][:prompt_len])  # trained under the system prompt
    assert chat_tok.decode(chat_ids).endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_chat_stops_on_the_templates_end_of_turn_token(tiny_model_dir, tok):
    """Chat (engine.chat.generate), the export and the Modelfile stop on these ids; a template whose stop
    text this vocabulary splits is flagged in the Dataset tab instead of running on silently."""
    from engine import config as C
    from engine.data import preview
    from engine.modeling.stop_tokens import stop_token_ids
    templates.apply(tok, "chatml")
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert stop_token_ids(tok) == [im_end] and templates.stop_problem(tok) is None
    templates.apply(tok, "llama3")  # <|eot_id|> is not in SmolLM's vocabulary
    assert stop_token_ids(tok) == [im_end]
    assert "'<|eot_id|>', which this tokenizer splits" in templates.stop_problem(tok)
    cfg = C.replace(C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir)), "data.template", "llama3")
    assert any("chat cannot stop on it" in n for n in preview.inspect("identity", cfg).notes)
    tok.add_special_tokens({"additional_special_tokens": ["<|eot_id|>"]})
    assert sorted(stop_token_ids(tok)) == sorted([tok.convert_tokens_to_ids("<|eot_id|>"), im_end])
