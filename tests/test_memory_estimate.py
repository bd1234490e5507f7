"""The numbers the Method and Hyperparameters tabs show before Train: parameter counts and module
names read from the model's files without torch, and a memory estimate that reacts to the settings
a user changes, with one concrete change when the run will not fit."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO
from engine import config as C
from engine.preflight import memory as E
from engine.preflight import shape as model_shape


def cfg_for(model_dir, **keys) -> C.RunConfig:
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(model_dir))
    for k, v in keys.items():
        cfg = C.replace(cfg, k.replace("__", "."), v)
    return cfg


def test_shape_is_read_without_torch(tiny_model_dir):
    code = ("import sys; from engine.preflight import shape as model_shape, memory as memory_estimate; "
            "from engine import config as C; "
            f"s = model_shape.of({str(tiny_model_dir)!r}); "
            "print(s.total_params, ','.join(s.linear_names)); "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    total, names = out.split()
    import torch  # noqa: F401  (the test process may; the UI process must not)
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert int(total) == sum(p.numel() for p in model.parameters())
    assert names.split(",") == ["down_proj", "gate_proj", "k_proj", "o_proj", "q_proj", "up_proj", "v_proj"]


def test_estimate_follows_the_settings(tiny_model_dir):
    shape = model_shape.read(tiny_model_dir)
    base = E.estimate(shape, cfg_for(tiny_model_dir, train__batch_size=4))
    assert E.estimate(shape, cfg_for(tiny_model_dir, train__batch_size=8)).peak_gib > base.peak_gib
    ckpt = E.estimate(shape, cfg_for(tiny_model_dir, train__batch_size=4, train__gradient_checkpointing=True))
    assert ckpt.parts_gib["activations"] < base.parts_gib["activations"]
    full = E.estimate(shape, cfg_for(tiny_model_dir, method__finetuning="full"))
    assert full.parts_gib["optimizer"] > 20 * base.parts_gib["optimizer"]
    assert 0 < base.trainable_pct < 100 and full.trainable_pct == 100


def test_default_model_qlora_weighs_less_than_lora_and_full_most():
    shape = model_shape.of("smollm2-135m-instruct")
    if shape is None:
        import pytest
        pytest.skip("the default model is not converted on this machine")
    est = {ft: E.estimate(shape, C.replace(C.RunConfig(), "method.finetuning", ft)) for ft in ("qlora", "lora", "full")}
    assert est["qlora"].parts_gib["weights"] < est["lora"].parts_gib["weights"] / 2
    assert est["full"].peak_gib > est["lora"].peak_gib > est["qlora"].peak_gib


def test_a_run_that_does_not_fit_gets_one_change_that_does(tiny_model_dir):
    shape = model_shape.read(tiny_model_dir)
    cfg = cfg_for(tiny_model_dir, train__batch_size=64, data__cutoff_len=2048)
    need = E.estimate(shape, cfg).peak_gib
    est = E.estimate(shape, cfg, gpu_gib=need * 0.8)
    assert est.fits is False
    assert est.suggestion and f"To fit: {est.suggestion}." in est.warning()
    assert E.estimate(shape, est.suggested_config, gpu_gib=need * 0.8).fits
    # on a larger model, where activations rather than the logits dominate, checkpointing comes first
    big = model_shape.ModelShape(total_params=7_000_000_000, layers=32, hidden=4096, intermediate=11008,
                                 vocab=32000, heads=32, kv_heads=32, tied_embeddings=False, model_type="llama",
                                 linears={**{n: [(4096, 4096)] * 32 for n in ("q_proj", "k_proj", "v_proj", "o_proj")},
                                          **{n: [(4096, 11008)] * 32 for n in ("gate_proj", "up_proj")},
                                          "down_proj": [(11008, 4096)] * 32})
    cfg7 = cfg_for(tiny_model_dir, method__finetuning="qlora", train__batch_size=8, data__cutoff_len=2048)
    est7 = E.estimate(big, cfg7, gpu_gib=24.0)
    assert est7.fits is False and est7.suggestion == "turn on train.gradient_checkpointing"
    assert E.estimate(shape, cfg, gpu_gib=need * 2).warning() == ""


def test_params_table_names_every_method_and_its_inference_cost(tiny_model_dir):
    rows = E.params_table(model_shape.read(tiny_model_dir), cfg_for(tiny_model_dir))
    by = {r["method"]: r for r in rows}
    assert set(by) == set(E.METHODS)
    assert by["lora"]["inference_latency"].startswith("none") and "virtual tokens" in by["prefix"]["inference_latency"]
    assert by["ia3"]["trainable_params"] < by["lora"]["trainable_params"] < by["full"]["trainable_params"]


@pytest.mark.parametrize("weights", [b"\x00not a safetensors file" * 10,  # the 8-byte length asks for exabytes
                                     b"\x05\x00\x00\x00\x00\x00\x00\x00[1,2]",  # a header that is not a table
                                     b"\x01"])  # a truncated download
def test_damaged_weights_give_a_reason_not_a_crash_or_a_memory_blowup(tmp_path, tiny_model_dir, weights):
    """The Method tab reads the weights' headers on every edit of the model field: a damaged file must not
    take the edit down (it once raised MemoryError, so a pasted model path was never stored)."""
    import shutil
    from engine.preflight import method_table as method_info
    d = tmp_path / "broken"
    shutil.copytree(tiny_model_dir, d)
    (d / "model.safetensors").write_bytes(weights)
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(d))
    assert method_info.estimate_markdown(cfg).startswith("Memory estimate unavailable: model.safetensors")
    assert "download or convert it again" in method_info.estimate_markdown(cfg)
    assert method_info.params_table(cfg) == [] and method_info.target_choices(cfg) == ["all"]
    with pytest.raises(model_shape.ShapeError):
        model_shape.of(str(d))
