"""Cheap checks that run before a dataset file reaches a parser that could crash on it.

pyarrow's JSON reader (behind `datasets`) overflows its stack and kills the process on nesting a
few hundred thousand levels deep; Python's json raises RecursionError far earlier. No real dataset
nests more than a few dozen levels, so anything past MAX_DEPTH is refused with a DataError-ready
message naming the file and the line where the nesting gets too deep.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

MAX_DEPTH = 1000


def nesting_problem(path: str | Path, max_depth: int = MAX_DEPTH) -> Optional[str]:
    """Why this JSON / JSONL file nests too deeply to parse safely, or None. Linear time, vectorised."""
    import numpy as np
    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        return None
    step = (np.isin(data, (ord("["), ord("{"))).astype(np.int32)
            - np.isin(data, (ord("]"), ord("}"))).astype(np.int32))
    depth = np.cumsum(step)  # brackets inside strings count too: only ever errs towards a lower real depth
    where = int(np.argmax(depth > max_depth)) if depth.max() > max_depth else -1
    if where < 0:
        return None
    line = int(np.count_nonzero(data[:where] == ord("\n"))) + 1
    return (f"{path}: line {line} nests lists/objects more than {max_depth} levels deep; no dataset needs "
            "that: the file is damaged or not a dataset")
