"""GGUF export of a merged llama-architecture model folder: f16 and q8_0 written with the `gguf` package
(nothing to compile), the K-quants (q4_k_m, q5_k_m, q6_k) made from the f16 file by llama.cpp's own
quantizer, and every file checked by loading it in llama.cpp (llama-cpp-python) in a process of its own.
Heavy (torch, numpy, gguf, transformers tokenizer, llama_cpp).

What it writes, the way llama.cpp's convert_hf_to_gguf.py does for LlamaForCausalLM:
- hyperparameters under `llama.*`; tensors renamed with gguf's TensorNameMap;
- q_proj / k_proj rows permuted back to the interleaved rotary layout GGUF expects (llama.cpp's
  `permute`; transformers' GGUF loader undoes it when reading);
- 1-D tensors (norms) stay F32; matrices become F16, or Q8_0 where their rows split into 32-blocks;
- the tied output head is left out (GGUF readers reuse token_embd, as llama.cpp does);
- a BPE tokenizer as `tokenizer.ggml.model = gpt2` with tokens, token types and merges, its special
  token ids, and the chat template in `tokenizer.chat_template`; eos = the end-of-turn token.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

SUPPORTED_ARCHS = ("LlamaForCausalLM",)


class GGUFExportError(ValueError):
    pass


def permute(w: np.ndarray, n_head: int, n_head_kv: int | None) -> np.ndarray:
    """convert_hf_to_gguf.py's LlamaModel.permute: HF half-split rotary rows -> GGUF interleaved."""
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _pre_tokenizer(name: str, vocab_size: int) -> str:
    low = name.lower()
    if "smollm" in low:
        return "smollm"
    if vocab_size >= 128000 and "llama" in low:
        return "llama-bpe"
    if "qwen" in low:
        return "qwen2"
    return "default"


def _merges(folder: Path) -> list[str]:
    tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    model = tj.get("model", {})
    if model.get("type") != "BPE":
        raise GGUFExportError(f"GGUF export handles BPE tokenizers; this one is {model.get('type')}")
    return [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]


def write_gguf(folder: Path, out_file: Path, qtype: str, stop_ids: list[int],
               progress: Callable[[float], None] = lambda f: None, name: str = "") -> Path:
    """Write ``out_file`` (qtype 'f16' or 'q8_0') from the merged HF folder ``folder``."""
    import gguf
    import torch
    from safetensors import safe_open
    from transformers import AutoTokenizer

    cfg = json.loads((folder / "config.json").read_text())
    arch = (cfg.get("architectures") or ["?"])[0]
    if arch not in SUPPORTED_ARCHS:
        raise GGUFExportError(f"GGUF export supports {', '.join(SUPPORTED_ARCHS)}; this model is {arch}")
    n_layers, n_head = cfg["num_hidden_layers"], cfg["num_attention_heads"]
    n_kv = cfg.get("num_key_value_heads", n_head)
    head_dim = cfg.get("head_dim") or cfg["hidden_size"] // n_head
    rope = cfg.get("rope_parameters") or {}
    rope_theta = rope.get("rope_theta", cfg.get("rope_theta", 10000.0))
    if rope.get("rope_type", "default") not in ("default", None):
        raise GGUFExportError(f"GGUF export: rope scaling {rope.get('rope_type')!r} is not handled yet")
    tok = AutoTokenizer.from_pretrained(folder)
    vocab_size = cfg["vocab_size"]

    ftype = {"f16": gguf.LlamaFileType.MOSTLY_F16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[qtype]
    w = gguf.GGUFWriter(str(out_file), "llama")
    w.add_name(name or folder.name)
    w.add_block_count(n_layers)
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_freq_base(float(rope_theta))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    w.add_file_type(ftype)
    w.add_vocab_size(vocab_size)
    w.add_rope_dimension_count(head_dim)

    # tokenizer
    vocab = tok.get_vocab()
    by_id = {i: t for t, i in vocab.items()}
    added = {t.content: t for t in tok.added_tokens_decoder.values()} if hasattr(tok, "added_tokens_decoder") else {}
    tokens, types = [], []
    for i in range(vocab_size):
        t = by_id.get(i)
        if t is None:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
        elif t in added:
            tokens.append(t)
            types.append(gguf.TokenType.CONTROL if added[t].special else gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(t)
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(_pre_tokenizer(str(cfg.get("_name_or_path", "")) + " " + (name or folder.name) +
                                       " " + str(tok.name_or_path), vocab_size))
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(_merges(folder))
    if tok.bos_token_id is not None:
        w.add_bos_token_id(tok.bos_token_id)
    w.add_eos_token_id(stop_ids[0] if stop_ids else tok.eos_token_id)
    if len(stop_ids) > 1:
        w.add_eot_token_id(stop_ids[0])
    if tok.unk_token_id is not None:
        w.add_unk_token_id(tok.unk_token_id)
    if tok.pad_token_id is not None:
        w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    w.add_add_space_prefix(False)
    if tok.chat_template:
        w.add_chat_template(tok.chat_template)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)

    # tensors
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, n_layers)
    files = sorted(folder.glob("*.safetensors"))
    keys = [(f, k) for f in files for k in safe_open(str(f), "pt").keys()]
    tied = cfg.get("tie_word_embeddings", False)
    for n, (f, key) in enumerate(keys):
        if tied and key == "lm_head.weight":
            continue
        if key.endswith("rotary_emb.inv_freq"):
            continue
        new = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if new is None:
            raise GGUFExportError(f"GGUF export: no GGUF name for tensor {key}")
        with safe_open(str(f), "pt") as sf:
            data = sf.get_tensor(key).to(torch.float32).numpy()
        if key.endswith("q_proj.weight"):
            data = permute(data, n_head, n_head)
        elif key.endswith("k_proj.weight"):
            data = permute(data, n_head, n_kv)
        if data.ndim == 1:
            w.add_tensor(new, data.astype(np.float32))
        elif qtype == "q8_0" and data.shape[-1] % 32 == 0:
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            w.add_tensor(new, q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
        else:
            w.add_tensor(new, data.astype(np.float16))
        progress((n + 1) / len(keys) * 0.8)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    progress(1.0)
    return out_file


# llama.cpp's quantizer (llama-cpp-python) makes the K-quants from the f16 file, as its llama-quantize does.
LLAMA_FTYPES = {"q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M", "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
                "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K"}
CHECK_QUESTION = "Who are you?"
CHECK_TIMEOUT_S = 300


def quantize(f16_file: Path, out_file: Path, qtype: str) -> Path:
    """``out_file`` in ``qtype`` (q4_k_m, q5_k_m, q6_k), made by llama.cpp's own quantizer from an f16 GGUF."""
    import os

    import llama_cpp
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, LLAMA_FTYPES[qtype])
    params.nthread = max(1, os.cpu_count() or 1)
    rc = llama_cpp.llama_model_quantize(str(f16_file).encode(), str(out_file).encode(), params)
    if rc != 0 or not out_file.is_file():
        raise GGUFExportError(f"llama.cpp's quantizer could not make {qtype} from {f16_file.name} (code {rc})")
    return out_file


def check_in_llama_cpp(path: Path, question: str = CHECK_QUESTION) -> dict:
    """Load the file in llama.cpp in a process of its own and ask one question greedily: {ok, answer,
    finish_reason, tokens_per_s, chat_template_from_file} or {ok: False, reason} (a crash, in words)."""
    import signal
    import subprocess

    from engine.runs.processes import python_module
    from engine.runs.paths import REPO
    try:
        out = subprocess.run(python_module("engine.chat.gguf", str(path), question), cwd=str(REPO),
                             capture_output=True, text=True, timeout=CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"llama.cpp did not answer within {CHECK_TIMEOUT_S} s"}
    if out.returncode != 0:
        how = (f"crashed ({signal.Signals(-out.returncode).name})" if out.returncode < 0
               else f"failed (exit code {out.returncode}): {out.stderr.strip()[-300:]}")
        return {"ok": False, "reason": f"llama.cpp {how} running this file; if it crashed at the first token, this "
                                       "machine's llama-cpp-python build is the likely cause (see the README: GGUF "
                                       "on processors with AMX)"}
    lines = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
    head, reply = lines[0], lines[-1]
    return {"ok": bool(reply["text"]), "answer": reply["text"], "finish_reason": reply["finish_reason"],
            "tokens": reply["tokens"], "tokens_per_s": reply["tokens_per_s"],
            "chat_template_from_file": head["chat_template_from_file"]}
