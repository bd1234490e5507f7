"""On a CUDA machine: the DDP, FSDP and DeepSpeed paths run the unchanged worker under torchrun with one
process, train, and leave a standard adapter folder. Skipped, with the reason, where there is no CUDA
GPU or no deepspeed package. Run with `-s` to see the figures (tokens/s, peak memory) for the note."""
import importlib.util
import json

import pytest

from engine.runs.events import read_all
from tests.test_distributed import launch


def _cuda() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return False


needs_cuda = pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (FSDP / DeepSpeed shard across GPUs)")
needs_deepspeed = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                                     reason="needs the deepspeed package (pip install deepspeed)")


def _train_one_process(make_config, strategy, **dist):
    cfg = make_config(distributed={"strategy": strategy, **dist}, output={"run_name": strategy},
                      train={"max_steps": 20, "learning_rate": 0.02, "batch_size": 4, "save_steps": 10})
    out = launch(cfg)
    assert out.returncode == 0, (out.stdout + out.stderr)[-4000:]
    evts = read_all(cfg.parent / "events.jsonl")
    train = [e for e in evts if e["kind"] == "train"]
    assert [e["step"] for e in train] == list(range(1, 21))
    assert sum(e["loss"] for e in train[-3:]) < sum(e["loss"] for e in train[:3]) - 0.9
    resolved = [e for e in evts if e["kind"] == "resolved"][0]
    assert resolved["strategy"] == strategy and resolved["world_size"] == 1
    assert (cfg.parent / "adapter" / "adapter_model.safetensors").is_file()
    from engine.chat.generate import load_run
    from peft import PeftModel
    model, _ = load_run(cfg.parent)
    assert isinstance(model, PeftModel)
    tps = [e["tokens_per_s"] for e in train[2:] if e.get("tokens_per_s")]
    print(json.dumps({"strategy": strategy, **dist, "tokens_per_s_median": sorted(tps)[len(tps) // 2],
                      "vram_peak_gib": max(e.get("vram_peak_gib", 0) for e in train)}))
    return cfg.parent


@pytest.mark.gpu
@needs_cuda
def test_fsdp_with_one_process_trains_and_saves_a_standard_adapter(make_config):
    _train_one_process(make_config, "fsdp")


@pytest.mark.gpu
@needs_cuda
def test_ddp_with_one_process_trains_and_saves_a_standard_adapter(make_config):
    _train_one_process(make_config, "ddp")


@pytest.mark.gpu
@needs_cuda
@needs_deepspeed
@pytest.mark.parametrize("strategy,offload", [("deepspeed_zero2", False), ("deepspeed_zero3", False),
                                              ("deepspeed_zero3", True)])
def test_deepspeed_with_one_process_trains_and_saves_a_standard_adapter(make_config, strategy, offload):
    run_dir = _train_one_process(make_config, strategy, cpu_offload=offload)
    ds = json.loads((run_dir / "deepspeed.json").read_text())
    assert ds["zero_optimization"]["stage"] == (3 if strategy.endswith("3") else 2)
