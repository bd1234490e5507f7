"""The soak in short: training while a browser reloads the page and two API clients poll it. No event lost
or repeated, the page never goes backwards, the run complete. The long version, which also measures the
app's memory per reload: `python bench/soak.py` (see its --help)."""
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
    report = soak(steps=30, reloads=4, reload_every=2.0, poll_every=0.5, clients=2, workdir=tmp_path,
                  model=tiny_model_dir)
    assert report["problems"] == [], report
    assert report["events_lost"] == report["events_repeated"] == 0 and report["api_calls"] >= 10, report
