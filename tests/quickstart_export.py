"""The quickstart run exported ONCE per test session as the README's GGUF users do it (merged fp16 folder plus
GGUF f16, q8_0 and q4_k_m), shared by the slow export tests (tests/quickstart_run.py trains the run itself)."""
from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path

from engine.config.export import ExportConfig
from engine.runs.export_client import ExportJob, start_export
from quickstart_run import quickstart_run

GGUF_TYPES = ["f16", "q8_0", "q4_k_m"]
_done: tuple[Path, ExportJob] | None = None


def exported_fp16_with_gguf() -> tuple[Path, ExportJob]:
    """(merged fp16 folder with gguf/quick-<type>.gguf, the finished export job with its checks)."""
    global _done
    if _done is None:
        root = Path(tempfile.mkdtemp(prefix="whetstone-export-"))
        atexit.register(shutil.rmtree, root, True)  # ~0.8 GB of weights
        run = quickstart_run(root / "saves")
        job = start_export(ExportConfig(run_dir=str(run), out_dir=str(root / "merged-fp16"), dtype="fp16",
                                        gguf=list(GGUF_TYPES)))
        assert job.wait(1800) == "finished", job.reason
        _done = (root / "merged-fp16", job)
    return _done
