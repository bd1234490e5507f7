"""Memory readings for the events (names from engine.runs.metrics): GPU allocated / reserved / peak, and
the process's resident memory. Heavy (torch)."""
from __future__ import annotations

import os


def rss_gib() -> float:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 2**20, 3)
    except OSError:
        pass
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)


def memory() -> dict:
    out = {"rss_gib": rss_gib()}
    import torch
    if torch.cuda.is_available():
        out["vram_alloc_gib"] = round(torch.cuda.memory_allocated() / 2**30, 3)
        out["vram_reserved_gib"] = round(torch.cuda.memory_reserved() / 2**30, 3)
        out["vram_peak_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 3)
    return out
