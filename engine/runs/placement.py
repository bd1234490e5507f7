"""Which queued runs may start now, and on which GPUs: pure logic, tested without GPUs. Light.

Without a GPU list (or with one GPU) the queue runs one run at a time on the whole machine. With a list
of GPUs, queued runs start side by side: a run of N processes takes N free GPUs of the list, in queue
order, and a run that does not fit waits, with every run behind it (no overtaking: the order a user set
is the order runs start). A run that asks for more processes than the list holds waits for an idle
machine and starts alone, seeing every GPU. A live run the queue did not place (started with Start or
from the terminal) may be on any GPU: nothing starts beside it.
"""
from __future__ import annotations

from typing import Optional, Sequence

Placement = tuple[str, Optional[list[int]]]  # (run name, the GPUs it sees; None = every GPU)


def assign(waiting: Sequence[tuple[str, int]], busy: Sequence[Optional[Sequence[int]]],
           gpus: Sequence[int]) -> list[Placement]:
    """The runs to start now. waiting: (name, processes) in queue order; busy: the GPUs of each live run
    (None: unknown, the whole machine); gpus: the GPUs the queue may use."""
    if not waiting:
        return []
    if len(gpus) < 2:  # one run at a time
        return [(waiting[0][0], None)] if not busy else []
    if any(b is None for b in busy):
        return []
    used = {g for b in busy for g in b}
    free = [g for g in gpus if g not in used]
    out: list[Placement] = []
    for name, processes in waiting:
        need = max(1, int(processes))
        if need > len(gpus):  # bigger than the list: alone, on the whole machine
            if not busy and not out:
                out.append((name, None))
            break
        if need > len(free):
            break
        out.append((name, free[:need]))
        free = free[need:]
    return out
