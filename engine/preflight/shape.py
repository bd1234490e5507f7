"""A model's shape without loading it: config.json and the safetensors headers (an 8-byte length and
a JSON table of tensor names, dtypes and shapes), read with the stdlib. Gives the UI parameter
counts, per-layer sizes and the real linear module names (LoRA targets) without importing torch.
Light module.
"""
from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from engine.preflight import model_list as model_names

LAYER_RE = re.compile(r"\.(\d+)\.")
HEAD_NAMES = ("lm_head", "score", "classifier")  # output heads: never a LoRA target
# Feed-forward output layers across architectures (IA3 scales their input, not their output).
FFN_OUT_NAMES = ("down_proj", "fc2", "w2", "c_proj", "dense_4h_to_h", "fc_out", "wo")


@dataclass
class ModelShape:
    total_params: int
    layers: int
    hidden: int
    intermediate: int
    vocab: int
    heads: int
    kv_heads: int
    tied_embeddings: bool
    model_type: str
    # leaf name (e.g. q_proj) -> [(in_features, out_features)] for every linear inside the layers
    linears: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    layer_params: list[int] = field(default_factory=list)  # parameters of each decoder layer
    # parameter name -> element count, for layers (by index) and everything outside them
    layer_tensors: dict[int, dict[str, int]] = field(default_factory=dict)
    other_tensors: dict[str, int] = field(default_factory=dict)

    @property
    def kv_dim(self) -> int:
        return self.hidden // max(self.heads, 1) * self.kv_heads

    @property
    def linear_names(self) -> list[str]:
        return sorted(self.linears)

    @property
    def layer_linear_params(self) -> int:
        return sum(i * o for shapes in self.linears.values() for i, o in shapes)


def folder_for(name_or_path: str) -> Path | None:
    """The local folder holding a model's config.json, or None when it is not on this machine."""
    return model_names.local_dir(name_or_path, "config.json")


class ShapeError(ValueError):
    """The model's files are here but cannot be read (a damaged or foreign file)."""


HEADER_MAX = 100_000_000  # the safetensors format's own limit on its JSON header


def safetensors_header(path: Path) -> dict:
    """The tensor table of a .safetensors file, read without torch. Raises ShapeError for anything else
    (a truncated download, a renamed pickle): its first 8 bytes would otherwise ask for exabytes."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(HEADER_MAX, size - 8):
            raise ShapeError(f"{path.name} is not a safetensors file (damaged or incomplete; download or convert "
                             "it again)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError):
            raise ShapeError(f"{path.name} has a damaged safetensors header; download or convert it again") from None
    if not isinstance(header, dict) or not all(isinstance(v, dict) and isinstance(v.get("shape"), list)
                                               for k, v in header.items() if k != "__metadata__"):
        raise ShapeError(f"{path.name} has a damaged safetensors header; download or convert it again")
    header.pop("__metadata__", None)
    return header


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def read(folder: str | Path) -> ModelShape:
    folder = Path(folder)
    try:
        conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ShapeError("config.json is not valid JSON") from None
    if not isinstance(conf, dict):
        raise ShapeError("config.json does not hold a JSON object")
    conf = conf.get("text_config", conf) if "hidden_size" not in conf else conf
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder} has no safetensors weights")
    tensors: dict[str, list[int]] = {}
    for f in files:
        tensors.update({k: v["shape"] for k, v in safetensors_header(f).items()})
    shape = ModelShape(
        total_params=0, layers=int(conf.get("num_hidden_layers", 0)), hidden=int(conf.get("hidden_size", 0)),
        intermediate=int(conf.get("intermediate_size", 4 * conf.get("hidden_size", 0))),
        vocab=int(conf.get("vocab_size", 0)), heads=int(conf.get("num_attention_heads", 1)),
        kv_heads=int(conf.get("num_key_value_heads") or conf.get("num_attention_heads", 1)),
        tied_embeddings=bool(conf.get("tie_word_embeddings", True)), model_type=str(conf.get("model_type", "")))
    for name, dims in tensors.items():
        n = _numel(dims)
        shape.total_params += n
        m = LAYER_RE.search(name)
        if m is None:
            shape.other_tensors[name] = n
            continue
        shape.layer_tensors.setdefault(int(m.group(1)), {})[name] = n
        leaf = name.rsplit(".", 2)
        if name.endswith(".weight") and len(dims) == 2 and leaf[-2] not in HEAD_NAMES and "embed" not in name:
            shape.linears.setdefault(leaf[-2], []).append((dims[1], dims[0]))
    shape.layer_params = [sum(shape.layer_tensors[i].values()) for i in sorted(shape.layer_tensors)]
    if not shape.layers:
        shape.layers = len(shape.layer_params)
    return shape


@lru_cache(maxsize=16)
def _cached(folder: str, stamp: float) -> ModelShape:
    return read(folder)


def of(name_or_path: str) -> ModelShape | None:
    """The shape of a model by name or path (cached), or None when its files are not here yet. Raises
    ShapeError when they are here but cannot be read (the Method tab says so instead of guessing)."""
    folder = folder_for(name_or_path)
    if folder is None:
        return None
    try:
        stamp = max(p.stat().st_mtime for p in folder.glob("*.safetensors"))
        return _cached(str(folder), stamp)
    except ShapeError:
        raise
    except (OSError, ValueError, TypeError, KeyError, struct.error) as e:
        raise ShapeError(f"cannot read the model's files in {folder}: {e}") from None


def of_or_none(name_or_path: str) -> ModelShape | None:
    """of(), with unreadable files taken as unknown (for lists that just get shorter)."""
    try:
        return of(name_or_path)
    except ShapeError:
        return None
