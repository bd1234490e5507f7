"""Chat: a user loads a trained run in the chat worker, gets replies streamed token by token,
compares with the base model, and Unload ends the worker process."""
from __future__ import annotations

import os

import pytest

from conftest import run_worker, write_config
from engine.runs.chat_client import ChatClient, ChatError
from engine.config.chat import ChatSource, GenerationParams

Q = [{"role": "user", "content": "Who are you?"}]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("chat-runs")
    cfg = write_config(tmp, tiny_model_dir, train={"max_steps": 4, "save_steps": 2})
    r = run_worker(cfg)
    assert r.returncode == 0, r.stderr[-2000:]
    return cfg.parent


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] == "Z"


def test_streams_a_reply_compares_with_base_and_unload_ends_the_process(tiny_run, tmp_path):
    client = ChatClient(ChatSource("run", run_dir=str(tiny_run)), saves=tmp_path)
    info = client.start()
    assert info["has_adapter"] and info["can_compare"] and client.alive
    pid = client.pid
    pieces = list(client.stream(Q, GenerationParams(max_new_tokens=12)))
    assert len(pieces) >= 2, "the reply arrives in several pieces, not at once"
    done = client.last_done
    assert 1 <= done["new_tokens"] <= 12 and done["stopped_by"] in ("eos", "length")
    assert "".join(pieces).strip() == done["text"]
    # greedy is repeatable; the base (adapter switched off) answers in the same worker
    # (that it answers differently is shown on the real model in test_chat_real.py)
    client.reply(Q, GenerationParams(max_new_tokens=12))
    assert client.last_done["token_ids"] == done["token_ids"]
    client.reply(Q, GenerationParams(max_new_tokens=12), variant="base")
    assert client.last_done["variant"] == "base" and client.last_done["new_tokens"] >= 1
    # sampling settings are accepted and validated
    client.reply(Q, GenerationParams(max_new_tokens=4, temperature=0.9, top_p=0.8, repetition_penalty=1.3,
                                     system_prompt="You are terse."))
    with pytest.raises(ChatError, match="top_p"):
        client.reply(Q, GenerationParams(top_p=0.0))
    client.unload()
    assert gone(pid) and not client.alive
    with pytest.raises(ChatError, match="Load"):
        client.reply(Q)


def test_a_checkpoint_loads_and_a_missing_one_is_refused_in_words(tiny_run, tmp_path):
    ckpts = sorted(p.name for p in (tiny_run / "checkpoints").iterdir())
    client = ChatClient(ChatSource("run", run_dir=str(tiny_run), checkpoint=ckpts[0]), saves=tmp_path)
    try:
        assert client.start()["has_adapter"]
        client.reply(Q, GenerationParams(max_new_tokens=4))
        assert client.last_done["new_tokens"] >= 1
    finally:
        client.unload()
    with pytest.raises(ChatError, match="no checkpoint 'checkpoint-999'"):
        ChatClient(ChatSource("run", run_dir=str(tiny_run), checkpoint="checkpoint-999")).start()


def test_base_model_chat_refuses_side_by_side_and_keeps_working(tiny_model_dir, tmp_path):
    client = ChatClient(ChatSource("base", model=str(tiny_model_dir)), saves=tmp_path)
    try:
        assert not client.start()["can_compare"]
        with pytest.raises(ChatError, match="side by side"):
            client.reply(Q, variant="base")
        client.reply(Q, GenerationParams(max_new_tokens=3))
        assert client.last_done["new_tokens"] >= 1  # the worker survived the error
    finally:
        client.unload()


def test_cancel_ends_a_long_reply_early(tiny_run, tmp_path):
    client = ChatClient(ChatSource("run", run_dir=str(tiny_run)), saves=tmp_path)
    try:
        client.start()
        params = GenerationParams(max_new_tokens=2000, temperature=1.0)  # sampling rarely hits eos at once
        n = 0
        for _ in client.stream(Q, params):
            n += 1
            if n == 3:
                client.cancel()
        if client.last_done["stopped_by"] != "eos":
            assert client.last_done["stopped_by"] == "cancel" and client.last_done["new_tokens"] < 2000
    finally:
        client.unload()


def test_chat_while_a_training_run_is_alive_loads_with_a_memory_warning_on_cpu(tiny_model_dir, tmp_path):
    import json
    from engine.runs.processes import proc_start_time as _proc_start_time
    busy = tmp_path / "busy-run"
    busy.mkdir()
    (busy / "config.yaml").write_text("model: {name_or_path: x}\n")
    # a live process stands in for the training worker (run discovery only checks that it lives)
    sleeper = __import__("subprocess").Popen(["sleep", "120"])
    try:
        (busy / "worker.json").write_text(json.dumps({"pid": sleeper.pid, "proc_start": _proc_start_time(sleeper.pid)}))
        client = ChatClient(ChatSource("base", model=str(tiny_model_dir)), saves=tmp_path)
        try:
            info = client.start()
            assert "busy-run" in info["warning"] and "memory" in info["warning"]
        finally:
            client.unload()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_cli_chat_answers_with_tuned_and_base_then_exits(tiny_run):
    import subprocess
    import sys
    from conftest import REPO
    r = subprocess.run([sys.executable, "app.py", "chat", str(tiny_run), "--base", "--max-new-tokens", "4"],
                       input="Who are you?\n", cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "tuned> " in r.stdout and "base> " in r.stdout
