"""GGUF files in llama.cpp, on the tiny model: the Chat worker loads a Q4_K_M file made by llama.cpp's quantizer,
streams its reply with the chat template from the file's metadata, and answers side by side with the merged
folder the file was exported into; without llama-cpp-python the export settings and the chat source say how to
install it instead of failing later."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from engine.config.chat import ChatSource, GenerationParams
from engine.runs.chat_client import ChatClient
from tests.conftest import REPO

QUESTION = "Who are you?"


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory, tiny_model_dir):
    """A merged folder (the tiny model) with gguf/tiny-f16.gguf and gguf/tiny-q4_k_m.gguf, as an export lays them."""
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by .ci/setup")
    from transformers import AutoTokenizer

    from engine.export.gguf import quantize, write_gguf
    from engine.modeling.stop_tokens import stop_token_ids
    out = tmp_path_factory.mktemp("gguf-export") / "merged"
    shutil.copytree(tiny_model_dir, out)
    (out / "gguf").mkdir()
    stops = stop_token_ids(AutoTokenizer.from_pretrained(out))
    f16 = write_gguf(out, out / "gguf" / "tiny-f16.gguf", "f16", stops, name="tiny")
    quantize(f16, out / "gguf" / "tiny-q4_k_m.gguf", "q4_k_m")
    return out


def test_chat_streams_a_gguf_reply_and_the_merged_folder_answers_beside_it(tiny_export):
    path = tiny_export / "gguf" / "tiny-q4_k_m.gguf"
    client = ChatClient(ChatSource("gguf", model=str(path)))
    try:
        info = client.start()
        assert info["can_compare"] and info["chat_template_from_file"], info
        assert info["compare_label"].endswith(str(tiny_export))
        params = GenerationParams(max_new_tokens=96)  # what python -m engine.chat.gguf answers with
        pieces = list(client.stream([{"role": "user", "content": QUESTION}], params))
        done = client.last_done
        assert len(pieces) >= 2 and done["stopped_by"] in ("eos", "length") and done["new_tokens"] == len(pieces), done
        merged = client.reply([{"role": "user", "content": QUESTION}], params, variant="base")
        assert client.last_done["variant"] == "base" and client.last_done["new_tokens"] >= 1
        assert isinstance(merged, str)
    finally:
        client.unload()
    # the chat worker and the export's check (python -m engine.chat.gguf) give the same greedy answer
    out = subprocess.run([sys.executable, "-m", "engine.chat.gguf", str(path), QUESTION], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[-1])["text"] == "".join(pieces).strip()


def test_a_missing_llama_cpp_is_named_with_the_install_command(tmp_path):
    (tmp_path / "x.gguf").write_bytes(b"GGUF")
    code = ("import importlib.abc, sys\n"
            "class Gone(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'llama_cpp': raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Gone())\n"
            "from engine.config.export import ExportConfig\n"
            "from engine.config.chat import ChatSource\n"
            f"print(ExportConfig(run_dir={str(REPO / 'presets')!r}, gguf=['f16', 'q4_k_m']).problems())\n"
            f"print(ChatSource('gguf', model={str(tmp_path / 'x.gguf')!r}).problem())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "gguf: q4_k_m are made by llama.cpp's quantizer, which is not installed: pip install llama-cpp-python" \
        in out.stdout
    assert "GGUF files are answered by llama.cpp, which is not installed: pip install llama-cpp-python" in out.stdout


def test_a_path_that_is_not_a_gguf_file_is_refused_in_words(tmp_path):
    assert "is not a GGUF file" in ChatSource("gguf", model=str(tmp_path / "missing.gguf")).problem()
