"""The soak in short: training while a browser reloads the page every two seconds and a second client
polls the API. No event lost, the page never goes backwards, app memory flat, the run complete.
The long version: `python bench/soak.py` (see its --help)."""
from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.browser
pytest.importorskip("playwright.sync_api")
pytest.importorskip("gradio_client")
if not Path("/usr/bin/chromium").exists():
    pytest.skip("Debian chromium is not installed", allow_module_level=True)


def test_a_run_survives_reloads_and_api_polling_with_nothing_lost(tmp_path, tiny_model_dir):
    from bench.soak import soak
    report = soak(steps=30, reload_every=2.0, poll_every=0.5, workdir=tmp_path, model=tiny_model_dir)
    assert report["problems"] == [], report
    assert report["reloads"] >= 3 and report["api_calls"] >= 10, report
