"""On the real 135M model: the quickstart's GGUF files run where GGUF runs. Loaded by llama.cpp (llama-cpp-python,
the runtime Ollama and llama.cpp users have), the f16 file and the 4-bit Q4_K_M made by llama.cpp's own quantizer
answer the held-out identity questions with the new name, and stop at the end-of-turn token the file carries
without a stop string from the caller; Q4_K_M is well under half the f16 size. Each file runs in a process of its
own, so a llama.cpp build that crashes on a file (as the processor-specific build did on an AMX machine) fails
here instead of taking the test run down."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import REPO
from quickstart_export import GGUF_TYPES, exported_fp16_with_gguf

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp", reason="llama-cpp-python is installed by .ci/setup")

HELD_OUT = [r["instruction"] for r in json.loads((REPO / "data" / "identity_eval.json").read_text())[:4]]


def ask_in_llama_cpp(path, questions):
    """(file facts, answers) from `python -m engine.chat.gguf FILE QUESTION ...` in its own process."""
    out = subprocess.run([sys.executable, "-m", "engine.chat.gguf", str(path), *questions], cwd=REPO,
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, f"llama.cpp ended with {out.returncode} on {path.name}: {out.stderr[-2000:]}"
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    return lines[0], lines[1:]


@pytest.mark.parametrize("qtype", ["f16", "q4_k_m"])
def test_the_gguf_answers_with_the_new_name_and_stops_at_its_end_of_turn_token(qtype):
    folder, _ = exported_fp16_with_gguf()
    facts, answers = ask_in_llama_cpp(folder / "gguf" / f"quick-{qtype}.gguf", HELD_OUT)
    report = "\n".join(f"{a['finish_reason']:6} {a['tokens_per_s']:6} tok/s  {a['text']!r}" for a in answers)
    print(f"{qtype}:\n{report}")
    assert facts["chat_template_from_file"], "the chat template must travel in the GGUF metadata"
    assert [a["finish_reason"] for a in answers] == ["stop"] * len(HELD_OUT), report
    assert all("Wren" in a["text"] or "Whetstone" in a["text"] for a in answers), report  # name or maker


def test_q4_k_m_is_well_under_half_of_f16_and_every_exported_file_ran_in_llama_cpp():
    folder, job = exported_fp16_with_gguf()
    size = {q: (folder / "gguf" / f"quick-{q}.gguf").stat().st_size for q in GGUF_TYPES}
    print({q: f"{s / 2**20:.1f} MiB" for q, s in size.items()}, f"q4_k_m/f16 = {size['q4_k_m'] / size['f16']:.3f}")
    assert size["q4_k_m"] < 0.45 * size["f16"]
    assert size["q4_k_m"] < size["q8_0"] < size["f16"]
    checks = {c["file"]: c for c in job.checks if c.get("what") == "llama.cpp"}
    assert sorted(checks) == sorted(f"gguf/quick-{q}.gguf" for q in GGUF_TYPES)
    for name, c in checks.items():  # the export's own check: loaded and answered in a process of its own
        assert c["ok"] and c["finish_reason"] == "stop" and ("Wren" in c["answer"] or "Whetstone" in c["answer"]), (name, c)
