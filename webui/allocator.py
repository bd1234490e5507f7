"""Where the app's Arrow arrays live: on glibc's allocator, not pyarrow's bundled mimalloc.

pandas 3 keeps strings in Arrow arrays, so every table the app draws (the runs list, which an API client
may poll twice a second; the dataset preview) allocates through pyarrow's default memory pool, mimalloc:
a 1 GiB region advised for huge pages that Python's and glibc's statistics do not see and malloc_trim does
not reach. Measured with bench/soak.py (300 page loads, two API clients): the app's Python heap and glibc's
in-use bytes stayed flat while its resident size stepped up 15-35 MiB after ~170 page loads and held, 4 KiB
pages of that region folded into 2 MiB huge pages. On glibc the same arrays are freed and trimmed with the
rest (webui.sessions.give_back_free_memory).

Arrow reads ARROW_DEFAULT_MEMORY_POOL once, when pyarrow is loaded (gradio loads it through pandas), so this
runs before the first gradio import; the variable is then put back as it was, so the training workers the
app starts keep Arrow's default (datasets' work there is not the app's to change). Imported after pyarrow
(a test that built the app in-process), only pyarrow's Python-level pool can still be changed.
"""
from __future__ import annotations

import os
import sys

VAR = "ARROW_DEFAULT_MEMORY_POOL"


def arrow_on_the_system_allocator() -> str:
    """Make glibc Arrow's default pool in this process; returns the pool's backend name."""
    try:
        if "pyarrow" not in sys.modules:
            before = os.environ.get(VAR)
            os.environ[VAR] = "system"
            try:
                import pyarrow
                pyarrow.default_memory_pool()  # read the variable now, while it says so
            finally:
                if before is None:
                    os.environ.pop(VAR, None)
                else:
                    os.environ[VAR] = before
        import pyarrow
    except ImportError:  # pandas without pyarrow: nothing to move
        return ""
    pyarrow.set_memory_pool(pyarrow.system_memory_pool())
    return pyarrow.default_memory_pool().backend_name
