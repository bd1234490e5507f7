"""bench/gpu_acceptance.py cannot rot between GPU runs: its dry run (tiny shape, CPU) takes one step of
every part that can run here, the real worker included, and collects the GPU-only tests by name."""
import json
import subprocess
import sys

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_the_gpu_acceptance_script_runs_every_part_on_cpu(tmp_path):
    out = subprocess.run([sys.executable, "bench/gpu_acceptance.py", "--dry-run", "--out", str(tmp_path / "out"),
                          "--work", str(tmp_path / "work"), "--budget-s", "1500"],
                         cwd=REPO, capture_output=True, text=True, timeout=1800)
    res = json.loads((tmp_path / "out" / "gpu_acceptance.json").read_text())
    parts = res["parts"]
    assert out.returncode == 0, (out.stdout[-2000:], {k: v for k, v in parts.items() if not v.get("ok")})
    assert list(parts) == ["environment", "kernels", "models", "workers", "distributed", "oom", "speed"]
    assert parts["environment"]["torch_varlen_attn"], "this torch ships varlen_attn"
    k = parts["kernels"]
    assert k["varlen_ok"] and k["kernel"] == "reference (CPU)" and k["loss_packed_varlen"] == k["loss_padded"]
    run = parts["workers"]["runs"]["lora-tiny"]
    assert run["status"] == "finished" and run["loss_finite_and_falling"] and run["memory_in_every_train_event"]
    assert run["adapter_loads_back"] and run["estimate_gib"] > 0
    # The GPU-only tests the real run executes are still there under the names the script uses.
    assert parts["oom"]["summary"].startswith("1 test collected"), parts["oom"]
    assert parts["distributed"]["summary"].startswith("3/"), parts["distributed"]  # ddp, fsdp, zero2
    speed = parts["speed"]["runs"][0]
    assert speed["whetstone_tok_s"] > 0 and speed["baseline_tok_s"] > 0, speed
    assert "GPU acceptance (dry run, CPU)" in out.stdout and "lora-tiny" in out.stdout
