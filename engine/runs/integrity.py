"""Whether a run's saved weights are whole, read without torch: a checkpoint, or a final adapter / model
folder, is checked file by file before a resume, a chat or an export loads it, so a truncated copy or a
disk fault is named in plain words (the file, how much of it is there, the checkpoint to use instead)
instead of a loader's raw "SafetensorError: Error while deserializing header". Light: stdlib only.

What is checked, cheaply (headers and sizes, never the whole of a large file):
  * safetensors: the 8-byte header length, the JSON header, and the file as long as its tensors say;
  * torch files (optimizer.pt, scheduler.pt, rng_state.pth, training_args.bin): a whole zip archive (the
    format torch.save writes), every member inside the file;
  * JSON files (trainer_state.json, configs, tokenizer): they parse;
  * a sharded model's index: every shard it names is there;
  * what a resume needs: trainer_state.json, the weights, optimizer.pt and scheduler.pt (a DeepSpeed or FSDP
    checkpoint keeps its optimizer state in a sub-folder instead).
"""
from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from engine.runs.store import checkpoints, weights_dir

WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
TORCH_FILES = (".pt", ".pth", ".bin")
RESUME_NEEDS = ("trainer_state.json", "optimizer.pt", "scheduler.pt")
MAX_HEADER = 100 * 1024 * 1024  # safetensors refuses larger headers too


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n} bytes"


def safetensors_problem(path: Path) -> Optional[str]:
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return f"{path.name} truncated ({_size(size)})"
        n = struct.unpack("<Q", head)[0]
        if n > MAX_HEADER:
            return f"{path.name} is not a safetensors file (its header length is {n})"
        if 8 + n > size:
            return f"{path.name} truncated ({_size(size)}; its header alone needs {_size(8 + n)})"
        header = f.read(n)
    try:
        meta = json.loads(header)
        end = max((int(v["data_offsets"][1]) for k, v in meta.items() if k != "__metadata__"), default=0)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        return f"{path.name} has a damaged header"
    need = 8 + n + end
    if size < need:
        return f"{path.name} truncated ({_size(size)} of {_size(need)})"
    return None


def torch_file_problem(path: Path) -> Optional[str]:
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as z:
            for m in z.infolist():
                if m.header_offset + m.compress_size > size:
                    return f"{path.name} truncated ({_size(size)})"
    except (zipfile.BadZipFile, OSError, EOFError):
        return f"{path.name} truncated or damaged ({_size(size)}: not a whole PyTorch file)"
    return None


def json_problem(path: Path) -> Optional[str]:
    try:
        json.loads(path.read_bytes())
    except (ValueError, OSError):
        return f"{path.name} damaged (not valid JSON; {_size(path.stat().st_size)})"
    return None


def file_problem(path: Path) -> Optional[str]:
    """What is wrong with one saved file, or None when it looks whole (or is of a kind not checked)."""
    name = path.name
    try:
        if name.endswith(".safetensors"):
            return safetensors_problem(path)
        if name.endswith(TORCH_FILES):
            return torch_file_problem(path)
        if name.endswith(".json"):
            return json_problem(path)
    except OSError as e:
        return f"{name} unreadable ({e.strerror or e})"
    return None


def problems(folder: str | Path, resumable: bool = False) -> list[str]:
    """Everything wrong with a weights folder (a checkpoint or a final adapter / model folder); [] when whole.
    resumable: also require what a resume needs (trainer state, optimizer and scheduler state)."""
    folder = Path(folder)
    if not folder.is_dir():
        return [f"{folder.name} is missing"]
    files = {p.name: p for p in folder.iterdir() if p.is_file()}
    out = []
    if not any(w in files for w in WEIGHTS):
        out.append("no weights file (" + " / ".join(WEIGHTS[:2]) + ") in it")
    if resumable:
        sharded_state = any(p.is_dir() for p in folder.iterdir())  # DeepSpeed global_step*/, FSDP optimizer_0/
        for need in RESUME_NEEDS:
            if need not in files and not (sharded_state and need != "trainer_state.json"):
                out.append(f"{need} missing")
    index = files.get("model.safetensors.index.json")
    if index is not None and not json_problem(index):
        shards = set(json.loads(index.read_bytes()).get("weight_map", {}).values())
        out += [f"{s} missing (named in {index.name})" for s in sorted(shards) if s not in files]
    for name in sorted(files):
        if (p := file_problem(files[name])) is not None:
            out.append(p)
    return out


@dataclass
class ResumePoint:
    """The checkpoint a resume continues from, and the newer ones skipped as damaged (name, problems)."""
    checkpoint: Optional[Path]
    skipped: list[tuple[str, list[str]]]

    def note(self) -> str:
        """'checkpoint-6 is damaged (adapter_model.safetensors truncated (...)); resuming from checkpoint-4'."""
        said = "; ".join(f"{name} is damaged ({', '.join(p)})" for name, p in self.skipped)
        if not said:
            return ""
        return said + (f"; resuming from {self.checkpoint.name}" if self.checkpoint else "")

    def failure(self) -> str:
        """Why no checkpoint can be resumed from, naming every damaged file, and what to do."""
        return (f"No checkpoint of this run can be resumed: {self.note()}. Copy whole checkpoints back into "
                "checkpoints/, or delete the damaged ones to train this run again from the start.")


def resume_point(run_dir: str | Path) -> ResumePoint:
    """The newest whole checkpoint of a run (None when it has none), skipping damaged newer ones."""
    skipped = []
    for ck in reversed(checkpoints(Path(run_dir))):
        try:
            found = problems(ck, resumable=True)
        except OSError as e:  # moved aside meanwhile by another rank of the same run
            found = [f"unreadable ({e.strerror or e})"]
        if not found:
            return ResumePoint(Path(ck), skipped)
        skipped.append((Path(ck).name, found))
    return ResumePoint(None, skipped)


def usable_instead(run_dir: str | Path, exclude: str = "") -> Optional[str]:
    """The newest checkpoint of a run whose weights are whole (not `exclude`), to suggest instead of a damaged one."""
    for ck in reversed(checkpoints(Path(run_dir))):
        if Path(ck).name != exclude and not problems(ck):
            return Path(ck).name
    return None


def set_aside(checkpoint: str | Path) -> Path:
    """Move a damaged checkpoint out of the way as checkpoints/damaged-<name> (kept for the user to inspect or
    delete): no resume, chat, export or checkpoint rotation picks it up again."""
    checkpoint = Path(checkpoint)
    target = checkpoint.with_name(f"damaged-{checkpoint.name}")
    n = 1
    while target.exists():
        n += 1
        target = checkpoint.with_name(f"damaged-{checkpoint.name}-{n}")
    checkpoint.rename(target)
    return target


def weights_problem(run_dir: str | Path, checkpoint: str = "") -> Optional[str]:
    """Why a run's weights (final, or one checkpoint) cannot be loaded, naming the damaged files and the weights
    to use instead; None when they are whole (or absent: the caller says that in its own words)."""
    w = weights_dir(run_dir, checkpoint)
    if w is None:
        return None
    found = problems(w)
    if not found:
        return None
    instead = usable_instead(run_dir, exclude=checkpoint)
    if checkpoint and weights_dir(run_dir) is not None and not problems(weights_dir(run_dir)):
        instead = "the final weights"
    what = checkpoint or f"final {w.name}"
    return (f"{Path(run_dir).name}'s {what} is damaged ({', '.join(found)}): "
            + (f"use {instead} instead." if instead else
               "no other weights of this run are whole; copy the files back or train the run again."))
