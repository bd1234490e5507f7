"""Every format, in every file type, turns into the tokens and loss masks a user expects: the prompt
masked (-100), the reply (and the token that ends it) trained. Expectations are written out by hand
for the default model's real tokenizer and chat template."""
from __future__ import annotations

import json

import pytest

from engine import config as C
from engine.data import encode, formats, pipeline, sources
from engine.data.files import DataError

SYS = "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def write(path, rows):
    """Write rows in the file type the suffix names."""
    if path.suffix == ".jsonl":
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=1), encoding="utf-8")
    elif path.suffix == ".csv":
        import csv
        keys = list(dict.fromkeys(k for r in rows for k in r))
        with path.open("w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, keys)
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v
                            for k, v in r.items()})
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def cfg_for(*names, **data):
    return C.replace(C.RunConfig(), "data", C.DataConfig(datasets=list(names), **data))


def split(tok, ex):
    """(masked text, trained text) of one encoded example."""
    masked = [i for i, l in zip(ex["input_ids"], ex["labels"]) if l == -100]
    trained = [l for l in ex["labels"] if l != -100]
    return tok.decode(masked), tok.decode(trained)


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".csv", ".parquet"])
def test_alpaca_in_every_file_type(tmp_path, tok, suffix):
    p = write(tmp_path / f"d{suffix}", [{"instruction": "Say hi", "input": "to Ana", "output": "Hi Ana!",
                                          "extra": "ignored"}])
    train, _, report = pipeline.build(cfg_for(str(p)), tok)
    assert report.formats == {str(p): "alpaca"}
    masked, trained = split(tok, train[0])
    assert masked == SYS + "<|im_start|>user\nSay hi\n\nto Ana<|im_end|>\n<|im_start|>assistant\n"
    assert trained == "Hi Ana!<|im_end|>\n"
    assert train[0]["input_ids"] == tok(masked + trained, add_special_tokens=False)["input_ids"]


def test_alpaca_with_system_and_history(tmp_path, tok):
    p = write(tmp_path / "d.json", [{"instruction": "And 3+3?", "input": "", "output": "6",
                                     "system": "Be brief.", "history": [["2+2?", "4"]]}])
    ex = pipeline.build(cfg_for(str(p)), tok)[0][0]
    masked, trained = split(tok, ex)
    assert trained == "4<|im_end|>\n6<|im_end|>\n"  # every reply in the history is trained too
    assert masked == ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n"
                      "<|im_start|>assistant\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet", ".csv"])
def test_sharegpt_with_tools_and_function_calls(tmp_path, tok, suffix):
    conv = [{"from": "human", "value": "Weather in Oslo?"},
            {"from": "function_call", "value": '{"name": "weather", "arguments": {"city": "Oslo"}}'},
            {"from": "observation", "value": '{"temp": -3}'},
            {"from": "gpt", "value": "It is −3 °C in Oslo. ❄️"}]
    tools = json.dumps([{"name": "weather", "parameters": {"city": "string"}}])
    p = write(tmp_path / f"d{suffix}", [{"conversations": conv, "tools": tools}])
    train, _, report = pipeline.build(cfg_for(str(p)), tok)
    assert report.formats[str(p)] == "sharegpt"
    masked, trained = split(tok, train[0])
    # SmolLM's template knows no tools: they are written into the system message, never dropped
    assert masked.startswith('<|im_start|>system\nYou can call these tools:\n[{"name": "weather"')
    assert trained == ('{"name": "weather", "arguments": {"city": "Oslo"}}<|im_end|>\n'
                       "It is −3 °C in Oslo. ❄️<|im_end|>\n")
    assert masked.endswith('<|im_start|>tool\n{"temp": -3}<|im_end|>\n<|im_start|>assistant\n')


def test_sharegpt_ending_on_the_user_is_trimmed_and_counted(tmp_path, tok):
    p = write(tmp_path / "d.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
                           {"from": "human", "value": "Bye?"}]},
        {"conversations": [{"from": "system", "value": "Terse."}, {"from": "human", "value": "x"},
                           {"from": "gpt", "value": "y"}]}])
    train, _, report = pipeline.build(cfg_for(str(p)), tok)
    assert report.ended_on_user == 1 and report.kept == 2
    assert split(tok, train[0]) == (SYS + "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
                                    "Hello<|im_end|>\n")
    assert split(tok, train[1])[0].startswith("<|im_start|>system\nTerse.<|im_end|>")


def test_sharegpt_wrong_role_names_row_turn_and_expected_role(tmp_path, tok):
    rows = [{"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}] * 11
    rows.append({"conversations": [{"from": "human", "value": "q"}, {"from": "assistant", "value": "a"}]})
    p = write(tmp_path / "d.json", rows)
    with pytest.raises(DataError) as e:
        pipeline.build(cfg_for(str(p)), tok)
    assert f"{p}, row 12 (line " in str(e.value)
    assert "turn 2: role `assistant` where `gpt` was expected" in str(e.value)


def test_openai_messages_with_unicode_and_extra_columns(tmp_path, tok):
    p = write(tmp_path / "d.jsonl", [{"id": 7, "messages": [{"role": "user", "content": "¿Qué tal? 日本語"},
                                                            {"role": "assistant", "content": "Bien 🙂"}]}])
    train, _, report = pipeline.build(cfg_for(str(p)), tok)
    assert report.formats[str(p)] == "messages"
    assert split(tok, train[0]) == (SYS + "<|im_start|>user\n¿Qué tal? 日本語<|im_end|>\n<|im_start|>assistant\n",
                                    "Bien 🙂<|im_end|>\n")


def test_plain_text_trains_every_token_and_ends_with_eos(tmp_path, tok):
    p = write(tmp_path / "d.jsonl", [{"text": "Whetstones sharpen steel."}])
    ex = pipeline.build(cfg_for(str(p)), tok)[0][0]
    assert ex["labels"] == ex["input_ids"]
    assert tok.decode(ex["input_ids"]) == "Whetstones sharpen steel.<|im_end|>"


def test_column_mapping_and_format_override(tmp_path, tok):
    p = write(tmp_path / "d.csv", [{"question": "Capital of France?", "answer": "Paris."}])
    with pytest.raises(DataError, match="data.columns"):
        pipeline.build(cfg_for(str(p)), tok)
    cfg = cfg_for(str(p), format="alpaca", columns={"instruction": "question", "output": "answer"})
    train, _, report = pipeline.build(cfg, tok)
    assert split(tok, train[0])[1] == "Paris.<|im_end|>\n"


def test_preference_pairs_in_their_canonical_form(tmp_path):
    rows = [{"prompt": "2+2?", "chosen": "4", "rejected": "5"},
            {"conversations": [{"from": "human", "value": "Hi"}], "chosen": {"from": "gpt", "value": "Hello!"},
             "rejected": {"from": "gpt", "value": "Go away."}},
            {"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "good"}],
             "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "bad"}]}]
    loaded = sources.load(str(write(tmp_path / "p.jsonl", rows)))
    assert loaded.spec.format == "preference"
    got = [formats.convert(r.data, loaded.spec).as_dict() for r in loaded.rows]
    assert got == [{"prompt_messages": [{"role": "user", "content": "2+2?"}], "chosen": "4", "rejected": "5"},
                   {"prompt_messages": [{"role": "user", "content": "Hi"}], "chosen": "Hello!",
                    "rejected": "Go away."},
                   {"prompt_messages": [{"role": "user", "content": "Q"}], "chosen": "good", "rejected": "bad"}]


def test_preference_data_in_an_sft_run_is_refused_with_the_reason(tok):
    with pytest.raises(DataError, match="preference pairs"):
        pipeline.build(cfg_for("preference_demo"), tok)


def test_bad_rows_are_counted_named_and_fail_or_drop(tmp_path, tok):
    rows = [{"instruction": "ok", "output": "fine"}, {"instruction": "", "output": ""},
            {"instruction": "no answer"}, {"instruction": "blank answer", "output": "  "}]
    p = write(tmp_path / "d.json", rows)
    with pytest.raises(DataError) as e:
        pipeline.build(cfg_for(str(p)), tok)
    msg = str(e.value)
    assert "3 of 4 training rows" in msg and "on_bad_rows" in msg
    assert f"{p}, row 2 (line 6): is empty" in msg
    assert f"{p}, row 3 (line 10): has no `output`" in msg
    assert f"{p}, row 4 (line 13): `output` is empty" in msg
    train, _, report = pipeline.build(cfg_for(str(p), on_bad_rows="drop"), tok)
    assert (len(train), report.dropped_bad, report.empty, report.missing) == (1, 3, 1, 2)


def test_long_rows_truncate_drop_or_fail_before_training(tmp_path, tok):
    p = write(tmp_path / "d.jsonl", [{"instruction": "short", "output": "ok"},
                                      {"instruction": "long " * 400, "output": "ok"}])
    with pytest.raises(DataError) as e:
        pipeline.build(cfg_for(str(p), cutoff_len=64, on_long_rows="fail"), tok)
    assert f"{p}, row 2 (line 2): " in str(e.value) and "longer than data.cutoff_len=64" in str(e.value)
    train, _, r = pipeline.build(cfg_for(str(p), cutoff_len=64, on_long_rows="drop"), tok)
    assert (len(train), r.dropped_long) == (1, 1)
    # truncating the long row cuts its reply off entirely: it is counted, not trained on
    train, _, r = pipeline.build(cfg_for(str(p), cutoff_len=64), tok)
    assert (len(train), r.truncated, r.dropped_no_target) == (1, 1, 1)


def test_mixing_datasets_and_a_separate_eval_file(tmp_path, tok):
    a = write(tmp_path / "a.jsonl", [{"instruction": f"q{i}", "output": "a"} for i in range(5)])
    b = write(tmp_path / "b.parquet", [{"messages": [{"role": "user", "content": "u"},
                                                     {"role": "assistant", "content": "v"}]}] * 3)
    train, val, r = pipeline.build(cfg_for(str(a), str(b), eval_datasets=["identity_eval"]), tok)
    assert (len(train), len(val)) == (8, 12)
    assert r.formats == {str(a): "alpaca", str(b): "messages", "identity_eval": "alpaca"}
    train, val, r = pipeline.build(cfg_for(str(a), str(b), val_size=0.25), tok)
    assert (len(train), len(val)) == (6, 2)


def test_llama_factory_dataset_info_folder_is_read_as_is(tmp_path, tok):
    (tmp_path / "qa.json").write_text(json.dumps([{"q": "Hi", "a": "Hey", "sys": "Kind."}]))
    (tmp_path / "chat.jsonl").write_text(json.dumps({"msgs": [{"role": "user", "content": "x"},
                                                              {"role": "assistant", "content": "y"}]}) + "\n")
    (tmp_path / "dataset_info.json").write_text(json.dumps({
        "my_qa": {"file_name": "qa.json", "columns": {"prompt": "q", "response": "a", "system": "sys"}},
        "my_chat": {"file_name": "chat.jsonl", "formatting": "sharegpt", "columns": {"messages": "msgs"},
                    "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                             "assistant_tag": "assistant"}}}))
    train, _, r = pipeline.build(cfg_for(f"{tmp_path}:my_qa", f"{tmp_path}:my_chat"), tok)
    assert split(tok, train[0]) == ("<|im_start|>system\nKind.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                                    "<|im_start|>assistant\n", "Hey<|im_end|>\n")
    assert split(tok, train[1])[1] == "y<|im_end|>\n"
    with pytest.raises(DataError, match="defines 2 datasets; name one"):
        sources.load(str(tmp_path))
    assert C.from_dict({"data": {"datasets": [f"{tmp_path}:my_qa"]}}, check_files=True)  # passes validation


def test_segments_tokenise_to_the_same_ids_as_the_whole_text(tok):
    msgs = [{"role": "user", "content": "a  b\n\n c"}, {"role": "assistant", "content": " lead space"}]
    enc = encode.encode_messages(tok, msgs, 4096)
    full = tok.apply_chat_template(msgs, tokenize=False)
    assert tok.decode(enc.input_ids) == full
