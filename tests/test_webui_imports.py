"""The UI process stays light: importing the web UI (and the app entry) never imports an ML library."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "transformers", "peft", "bitsandbytes", "accelerate", "datasets")
MODULES = ["webui", "webui.app", "webui.state", "webui.form", "webui.fields", "webui.live", "webui.charts",
           "webui.progress", "webui.presets", "webui.runs_table", "webui.dataset", "webui.method",
           "webui.hyperparams", "webui.train", "webui.chat", "webui.export"]


@pytest.mark.parametrize("entry", ["webui.app", "app"])
def test_importing_the_ui_leaves_ml_libraries_unloaded(entry):
    if entry == "app" and not (REPO / "app.py").is_file():
        pytest.skip("app.py not present")
    code = ("import importlib, sys\n"
            f"for m in {MODULES + [entry]!r}: importlib.import_module(m)\n"
            "from webui.app import build_demo\n"
            "build_demo()\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_DISABLE_TELEMETRY": "1",
                              "PATH": "/usr/bin:/bin", "HOME": str(Path.home())})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1:] in ([""], []), f"heavy modules imported: {out.stdout}"


def test_serving_beyond_this_machine_needs_a_password():
    from webui.app import launch
    with pytest.raises(SystemExit, match="without a password"):
        launch(host="0.0.0.0")
