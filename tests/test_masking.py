"""Loss only on the replies: the prompt tokens are masked, each reply and its end-of-turn token trained."""
from transformers import AutoTokenizer

from engine.data.encode import IGNORE, encode_messages

SYSTEM = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


def split(tok, enc):
    trained = [t for t, l in zip(enc.input_ids, enc.labels) if l != IGNORE]
    masked = [t for t, l in zip(enc.input_ids, enc.labels) if l == IGNORE]
    return tok.decode(trained), tok.decode(masked)


def test_single_turn_trains_only_the_reply_and_its_end_token(default_model_dir):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    enc = encode_messages(tok, [{"role": "user", "content": "Who are you?"},
                                {"role": "assistant", "content": "I am Wren."}], cutoff_len=512)
    trained, masked = split(tok, enc)
    # Checked by hand against the ChatML template that ships with SmolLM2.
    assert trained == "I am Wren.<|im_end|>\n"
    assert masked == SYSTEM + "<|im_start|>user\nWho are you?<|im_end|>\n<|im_start|>assistant\n"
    # The labels of trained positions are the input ids themselves (the model shifts them).
    assert all(l == i for i, l in zip(enc.input_ids, enc.labels) if l != IGNORE)
    # The joined pieces tokenise the same as the whole rendered text.
    full = tok.apply_chat_template([{"role": "user", "content": "Who are you?"},
                                    {"role": "assistant", "content": "I am Wren."}], tokenize=False)
    assert tok.decode(enc.input_ids) == full


def test_multi_turn_masks_every_user_turn_and_trains_every_reply(default_model_dir):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    msgs = [{"role": "system", "content": "Be brief."},
            {"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"},
            {"role": "user", "content": "And 3+3?"}, {"role": "assistant", "content": "6"}]
    enc = encode_messages(tok, msgs, cutoff_len=512)
    trained, masked = split(tok, enc)
    assert trained == "4<|im_end|>\n6<|im_end|>\n"
    assert "2+2?" in masked and "And 3+3?" in masked and "Be brief." in masked
    assert "SmolLM" not in masked  # an explicit system prompt replaces the template's default


def test_cutoff_truncates_and_reports_it(default_model_dir):
    tok = AutoTokenizer.from_pretrained(default_model_dir)
    enc = encode_messages(tok, [{"role": "user", "content": "hi"},
                                {"role": "assistant", "content": "word " * 100}], cutoff_len=40)
    assert len(enc.input_ids) == len(enc.labels) == 40 and enc.truncated
