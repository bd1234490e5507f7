"""Every fine-tuning method trains the tiny model: given four identity rows seen every step, the loss
falls within a few steps, the trainable-parameter count the Method tab shows (computed without torch)
is the one the worker reports, and the saved output loads back for chat."""
from __future__ import annotations

import json

import pytest

from conftest import run_worker

# Learning rates that move each method visibly in five steps on the tiny random model.
METHODS = {
    "lora": {}, "full": {}, "adalora": {},
    "lora-dora-rslora": {"method": {"finetuning": "lora", "lora": {"use_dora": True, "use_rslora": True}}},
    "lora-pissa": {"method": {"finetuning": "lora", "lora": {"init": "pissa"}}},
    "lora-plus": {"method": {"finetuning": "lora", "lora": {"loraplus_lr_ratio": 16.0}}},
    "ia3": {"train": {"learning_rate": 0.05}},
    "prefix": {"train": {"learning_rate": 0.05}},
    "prompt": {"train": {"learning_rate": 0.05}},
    "ptuning": {"train": {"learning_rate": 0.01}},
    "bottleneck": {},
    "freeze": {"method": {"finetuning": "freeze", "freeze": {"trainable_layers": 1}}},
    "freeze-modules": {"method": {"finetuning": "freeze", "freeze": {"trainable_layers": 2,
                                                                        "trainable_modules": ["mlp"],
                                                                        "extra_modules": ["norm"]}}},
    "lora-adamw8bit": {"train": {"optimizer": "adamw_8bit"}},
    # bitsandbytes 0.50's CPU backend really trains 4-bit and 8-bit weights (slowly), so these run here too
    "qlora": {"train": {"optimizer": "paged_adamw_8bit"}},
    "qlora-fp4": {"method": {"finetuning": "qlora", "quant": {"type": "fp4", "double_quant": False}}},
    "lora-8bit": {"model": {"quantization": "8bit"}},
}


def events(cfg_path) -> list[dict]:
    return [json.loads(line) for line in (cfg_path.parent / "events.jsonl").read_text().splitlines()]


def train_and_check(cfg_path) -> list[dict]:
    r = run_worker(cfg_path)
    ev = events(cfg_path)
    assert r.returncode == 0, [e for e in ev if e["kind"] == "error"] or r.stderr[-3000:]
    losses = [e["loss"] for e in ev if e["kind"] == "train"]
    assert len(losses) == 5 and losses[-1] < losses[0], losses
    assert ev[-1]["kind"] == "status" and ev[-1]["status"] == "finished"
    return ev


def sections_for(name: str) -> dict:
    spec = METHODS[name]
    sections = {k: dict(v) for k, v in spec.items()}
    sections.setdefault("method", {"finetuning": name.split("-")[0]})
    sections.setdefault("train", {})
    sections["train"] = {"max_steps": 5, "save_steps": 100, **sections["train"]}
    sections["data"] = {"datasets": ["identity"], "max_samples": 4, "cutoff_len": 96}
    return sections


@pytest.mark.parametrize("name", list(METHODS))
def test_method_trains_and_loads_back_for_chat(name, make_config, tiny_model_dir):
    from engine import config as C
    from engine.preflight import memory as memory_estimate
    from engine.preflight import shape as model_shape
    from engine.chat.generate import answer, load_run

    sections = sections_for(name)
    model_section = sections.pop("model", None)  # make_config fixes the model path; add the rest after
    cfg_path = make_config(**sections)
    if model_section:
        import yaml
        data = yaml.safe_load(cfg_path.read_text())
        data["model"].update(model_section)
        cfg_path.write_text(yaml.safe_dump(data))
    ev = train_and_check(cfg_path)
    resolved = next(e for e in ev if e["kind"] == "resolved")
    cfg = C.load(cfg_path, check_files=False)
    shape = model_shape.read(tiny_model_dir)
    assert memory_estimate.trainable_params(shape, cfg) == resolved["trainable_params"]
    model, tok = load_run(cfg_path.parent)
    reply = answer(model, tok, [{"role": "user", "content": "Who are you?"}], max_new_tokens=4)
    assert isinstance(reply, str)
    if name == "lora-pissa":  # converted to plain LoRA (rank 2r) so it loads on the untouched base
        conf = json.loads((cfg_path.parent / "adapter" / "adapter_config.json").read_text())
        assert conf["r"] == 16 and conf["init_lora_weights"] is True


def test_bottleneck_adapter_resumes_and_changes_the_model(make_config, tiny_model_dir):
    """Bottleneck adapters are Whetstone's own module: their checkpoints resume, and the loaded adapter
    really changes the model's output."""
    import torch
    import yaml

    from engine.chat.generate import load_run
    sections = sections_for("bottleneck")
    sections["train"].update(max_steps=3, save_steps=3)
    cfg_path = make_config(**sections)
    assert run_worker(cfg_path).returncode == 0
    data = yaml.safe_load(cfg_path.read_text())
    data["train"]["max_steps"] = 5
    cfg_path.write_text(yaml.safe_dump(data))
    r = run_worker(cfg_path)
    assert r.returncode == 0, r.stderr[-2000:]
    ev = events(cfg_path)
    assert any(e.get("what") == "resuming" for e in ev)
    assert [e["step"] for e in ev if e["kind"] == "train"][-2:] == [4, 5]
    tuned, tok = load_run(cfg_path.parent)
    base, _ = load_run(None, base=str(tiny_model_dir))
    ids = tok("hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(tuned(input_ids=ids).logits, base(input_ids=ids).logits)
