"""Turn an exception from a run into plain words: what went wrong and what to change."""
from __future__ import annotations

from engine.config import RunConfig


# What the communication backends (gloo, NCCL) say when a peer process of a multi-process run is gone.
PEER_LOST = ("connection reset by peer", "connection closed by peer", "broken pipe", "watchdog caught collective",
             "nccl communicator was aborted", "socket timeout")


def explain(e: BaseException, cfg: RunConfig | None = None) -> str:
    msg = str(e) or type(e).__name__
    name = type(e).__name__
    low = msg.lower()
    if name == "OutOfMemoryError" or "out of memory" in low:
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
        return "Out of memory. To fit: " + "; ".join(tips or ["use a smaller model"]) + "."
    if isinstance(e, ModuleNotFoundError) or name == "ModuleNotFoundError":
        mod = getattr(e, "name", None) or msg
        return f"A package is missing: {mod}. Install it with `pip install {str(mod).split('.')[0]}` and start again."
    if isinstance(e, ImportError):
        return f"A package is missing or too old: {msg}. Run the README's install command again."
    if name in ("ConfigError", "DataError", "ModelLoadError", "MethodError", "TemplateError", "EncodeError",
                "QuantizationError"):
        return msg
    if isinstance(e, OSError) and ("no space left" in low or getattr(e, "errno", None) == 28):
        return "The disk is full: free some space (old runs in saves/, checkpoints) and resume the run."
    if isinstance(e, PermissionError):
        return f"Cannot write: {msg}. Check the permissions of the saves folder."
    if any(k in low for k in PEER_LOST):
        return ("Another training process of this run stopped unexpectedly (killed, or out of host or GPU memory), "
                "so the others could not go on. Its own error is in the run's stdout.log. Resume continues from the "
                f"last checkpoint. (Details: {msg[:300]})")
    return f"{name}: {msg}"
