"""Exceptions from any worker (training, chat, export, evaluation) in plain words: what went wrong and
what to change. Light: the workers call it, and it imports nothing heavy."""
from __future__ import annotations

from engine.config import RunConfig

# Our own errors, whose messages already say what to do: shown as they are.
OWN_ERRORS = ("ConfigError", "DataError", "ModelLoadError", "MethodError", "TemplateError", "EncodeError",
              "QuantizationError", "CheckpointsDamaged", "DiskFull", "RewardError")


# What the communication backends (gloo, NCCL) say when a peer process of a multi-process run is gone.
PEER_LOST = ("connection reset by peer", "connection closed by peer", "broken pipe", "watchdog caught collective",
             "nccl communicator was aborted", "socket timeout")


def explain(e: BaseException, cfg: RunConfig | None = None, tips: list[str] | None = None,
            plain: tuple[str, ...] = ()) -> str:
    """What `e` means for the user. cfg: the run's config, for the settings that would make it fit in
    memory (tips: those settings, said instead); plain: exception class names whose message is shown as
    it is (a worker's own refusals)."""
    msg = str(e) or type(e).__name__
    name = type(e).__name__
    low = msg.lower()
    # CUDA says "out of memory"; the CPU allocator "can't allocate memory" (a RuntimeError); Python MemoryError.
    host = isinstance(e, MemoryError) or "can't allocate memory" in low or "cannot allocate memory" in low
    if name == "OutOfMemoryError" or "out of memory" in low or host:
        tips = list(tips or []) or _memory_tips(cfg)
        where = " (this machine's RAM)" if host and "cuda" not in low else ""
        return f"Out of memory{where}. To fit: " + "; ".join(tips or ["use a smaller model"]) + "."
    if name in plain or name in OWN_ERRORS:
        return msg
    if isinstance(e, ModuleNotFoundError) or name == "ModuleNotFoundError":
        mod = getattr(e, "name", None) or msg
        return f"A package is missing: {mod}. Install it with `pip install {str(mod).split('.')[0]}` and start again."
    if isinstance(e, ImportError):
        return f"A package is missing or too old: {msg}. Run the README's install command again."
    if is_disk_full(e):
        return ("The disk is full, or a file grew past the size this system allows, while writing: "
                f"{msg.splitlines()[0][:200]}. Free some space (old runs in saves/, their checkpoints) or raise "
                "the file-size limit, then Resume: the run continues from its last complete checkpoint.")
    if name == "SafetensorError" or "error while deserializing header" in low:
        return (f"A weights file is damaged (truncated or corrupt: {msg.splitlines()[0][:200]}). Copy it again, or "
                "use another checkpoint of the run.")
    if isinstance(e, PermissionError):
        return f"Cannot write: {msg}. Check the permissions of the saves folder."
    if any(k in low for k in PEER_LOST):
        return ("Another training process of this run stopped unexpectedly (killed, or out of host or GPU memory), "
                "so the others could not go on. Its own error is in the run's stdout.log. Resume continues from the "
                f"last checkpoint. (Details: {msg[:300]})")
    return f"{name}: {msg}"


def _memory_tips(cfg: RunConfig | None) -> list[str]:
    """The settings that lower a training run's memory, with this run's values."""
    bs = cfg.train.batch_size if cfg else None
    tips = []
    if bs and bs > 1:
        tips.append(f"lower train.batch_size (e.g. {bs} -> {max(1, bs // 2)}) and raise train.grad_accum to keep "
                    "the effective batch")
    if cfg and not cfg.train.gradient_checkpointing:
        tips.append("turn on train.gradient_checkpointing")
    if cfg:
        tips.append(f"lower data.cutoff_len (now {cfg.data.cutoff_len})")
        if cfg.method.finetuning in ("full", "freeze", "lora"):
            tips.append("use qlora (4-bit base weights)")
    return tips


class DiskFull(OSError):
    """A save that did not fit, after its half-written files were removed: the message says how much it needed,
    how much is free and the last complete checkpoint."""


def _size(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.1f} MB"


def disk_full(what: str, needed: int, free: int, folder, last_checkpoint: str | None, at_least: bool = False) -> DiskFull:
    """The error for a save that filled the disk. needed: what it takes (at_least: what was written before it
    failed, so it needs more); free: what is free now that its half-written files are gone."""
    last = (f"The last complete checkpoint is {last_checkpoint}: Resume continues from it once there is room."
            if last_checkpoint else "There is no complete checkpoint yet: Resume starts over once there is room.")
    e = DiskFull(f"The disk is full: writing {what} needed {'more than ' if at_least else 'about '}"
                        f"{_size(needed)}, and {folder} has {_size(free)} free (its half-written files were "
                        f"removed). {last} Free some space (old runs in saves/, their checkpoints) or lower "
                        "train.save_total_limit.")
    e.errno = 28  # ENOSPC, as the write that failed said
    return e


# ENOSPC (28), EFBIG (27), EDQUOT (122): the write failed for lack of room, not for a bug. torch.save,
# safetensors and tokenizers wrap the OSError in their own exceptions, so their texts are matched too.
_DISK_ERRNOS = {28, 27, 122}
_DISK_WORDS = ("no space left", "file too large", "filetoolarge", "storagefull", "disk quota",
               "os { code: 28", "os { code: 27", "file write failed", "unexpected pos")


def is_disk_full(e: BaseException) -> bool:
    """The write failed for lack of room (or a file-size limit), whichever library wrapped the OSError."""
    seen = 0
    while e is not None and seen < 10:
        if getattr(e, "errno", None) in _DISK_ERRNOS:
            return True
        low = str(e).lower()
        if any(w in low for w in _DISK_WORDS):
            return True
        e = e.__cause__ or e.__context__
        seen += 1
    return False
