"""A user arriving from LLaMA-Factory brings their YAML: `python app.py train THEIR.yaml` recognises it, prints the
converted config and every key it did not map, and trains; `python app.py convert THEIR.yaml -o mine.yaml` writes
it. The configs below are written the way LLaMA-Factory's own examples are (examples/train_lora/..._sft.yaml,
train_qlora/..._otfq.yaml, train_lora/..._dpo.yaml, train_full/..._sft.yaml, a freeze run), pointed at the tiny
model and at a data folder of theirs (dataset_info.json)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine import config as C
from engine.config import llamafactory as lf
from engine.runs.events import read_all
from tests.conftest import REPO

COMMON = """\
### model
model_name_or_path: {model}
trust_remote_code: true

### dataset
dataset: {dataset}
dataset_dir: {data}
template: chatml
cutoff_len: 128
max_samples: 16
overwrite_cache: true
preprocessing_num_workers: 16
dataloader_num_workers: 4

### output
output_dir: {saves}/{name}
logging_steps: 1
save_steps: 500
plot_loss: true
overwrite_output_dir: true
save_only_model: false
report_to: none  # choices: [none, wandb, tensorboard, swanlab, mlflow]

### train
per_device_train_batch_size: 2
gradient_accumulation_steps: 2
learning_rate: {lr}
num_train_epochs: 3.0
max_steps: 2
lr_scheduler_type: cosine
warmup_ratio: 0.1
ddp_timeout: 180000000
resume_from_checkpoint: null
"""
METHODS = {
    "lora_sft": "stage: sft\ndo_train: true\nfinetuning_type: lora\nlora_rank: 8\nlora_target: all\n",
    "qlora_sft": "stage: sft\ndo_train: true\nfinetuning_type: lora\nlora_rank: 8\nlora_target: all\n"
                 "quantization_bit: 4\nquantization_method: bnb\ndouble_quantization: false\n",
    "lora_dpo": "stage: dpo\ndo_train: true\nfinetuning_type: lora\nlora_rank: 8\nlora_target: all\n"
                "pref_beta: 0.1\npref_loss: sigmoid  # choices: [sigmoid (dpo), orpo, simpo]\n",
    "full_sft": "stage: sft\ndo_train: true\nfinetuning_type: full\n",
    "freeze_sft": "stage: sft\ndo_train: true\nfinetuning_type: freeze\nfreeze_trainable_layers: 1\n"
                  "freeze_trainable_modules: all\n",
}
EXPECTED = {  # what each must become
    "lora_sft": {"method.stage": "sft", "method.finetuning": "lora", "method.lora.rank": 8, "method.lora.alpha": 16},
    "qlora_sft": {"method.finetuning": "qlora", "method.quant.double_quant": False},
    "lora_dpo": {"method.stage": "dpo", "method.pref.beta": 0.1, "method.pref.dpo_loss": "sigmoid",
                 "data.datasets": None},
    "full_sft": {"method.finetuning": "full"},
    "freeze_sft": {"method.finetuning": "freeze", "method.freeze.trainable_layers": 1,
                   "method.freeze.trainable_modules": []},
}


@pytest.fixture(scope="module")
def their_data(tmp_path_factory) -> Path:
    """A LLaMA-Factory data folder: dataset_info.json naming an alpaca set and a ranked (preference) one."""
    folder = tmp_path_factory.mktemp("lf-data")
    rows = json.loads((REPO / "data" / "identity.json").read_text())[:16]
    (folder / "identity.json").write_text(json.dumps(rows))
    pairs = json.loads((REPO / "data" / "preference_demo.json").read_text())[:16]
    (folder / "dpo_pairs.json").write_text(json.dumps(
        [{"instruction": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]))
    (folder / "dataset_info.json").write_text(json.dumps({
        "identity": {"file_name": "identity.json"},
        "dpo_pairs": {"file_name": "dpo_pairs.json", "ranking": True,
                      "columns": {"prompt": "instruction", "chosen": "chosen", "rejected": "rejected"}}}))
    return folder


def their_yaml(tmp_path: Path, name: str, model: Path, data: Path, extra: str = "") -> Path:
    text = METHODS[name] + "\n" + COMMON.format(model=model, data=data, saves=tmp_path / "saves", name=name,
                                                dataset="dpo_pairs" if "dpo" in name else "identity",
                                                lr="5.0e-6" if "dpo" in name else "1.0e-4") + extra
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def flat_get(config: dict, key: str):
    node = config
    for part in key.split("."):
        node = node[part]
    return node


@pytest.mark.parametrize("name", list(METHODS))
def test_their_example_config_converts_and_trains_on_the_tiny_model(name, tmp_path, tiny_model_dir, their_data):
    path = their_yaml(tmp_path, name, tiny_model_dir, their_data)
    conv = lf.read(path)
    assert conv is not None and conv.errors == [], conv.errors
    for key, value in EXPECTED[name].items():
        if value is not None:
            assert flat_get(conv.config, key) == value, key
    assert flat_get(conv.config, "data.datasets") == [f"{their_data}:{'dpo_pairs' if 'dpo' in name else 'identity'}"]
    assert flat_get(conv.config, "data.template") == "chatml"  # their chatml renders exactly as Whetstone's
    assert flat_get(conv.config, "output.run_name") == name
    out = subprocess.run([sys.executable, "app.py", "train", str(path)], cwd=REPO, capture_output=True, text=True,
                         timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "LLaMA-Factory config" in out.stdout and "warning: preprocessing_num_workers: left out" in out.stdout
    run = tmp_path / "saves" / name
    cfg = C.load(run / "config.yaml")
    assert cfg.train.batch_size == 2 and cfg.train.grad_accum == 2 and cfg.data.cutoff_len == 128
    evts = read_all(run / "events.jsonl")
    assert [e["step"] for e in evts if e["kind"] == "train"] == [1, 2]
    assert evts[-1]["status"] == "finished"


def test_a_key_that_changes_training_and_has_no_equivalent_is_named_and_nothing_trains(tmp_path, tiny_model_dir,
                                                                                        their_data):
    path = their_yaml(tmp_path, "lora_sft", tiny_model_dir, their_data,
                      extra="use_galore: true\ntrain_on_prompt: true\nlr_scheduler_type: cosine_with_restarts\n")
    out = subprocess.run([sys.executable, "app.py", "train", str(path)], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 2
    assert "error: use_galore: not a key the converter knows" in out.stdout
    assert "error: train_on_prompt: True is not available: Whetstone trains on the replies only" in out.stdout
    assert "error: lr_scheduler_type: 'cosine_with_restarts' has no Whetstone equivalent" in out.stdout
    assert "not trained: 3 key(s)" in out.stderr
    assert not (tmp_path / "saves").exists()


def test_convert_writes_a_whetstone_config_that_loads_as_it_was_printed(tmp_path, tiny_model_dir, their_data):
    path = their_yaml(tmp_path, "lora_dpo", tiny_model_dir, their_data)
    mine = tmp_path / "mine.yaml"
    out = subprocess.run([sys.executable, "app.py", "convert", str(path), "-o", str(mine)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert f"train it with: python app.py train {mine}" in out.stdout
    text = mine.read_text()
    assert text.startswith("# Converted from the LLaMA-Factory config")
    assert "# warning: overwrite_output_dir: left out" in text
    cfg = C.load(mine)
    assert (cfg.method.stage, cfg.method.finetuning, cfg.train.learning_rate) == ("dpo", "lora", 5e-6)
    assert cfg.train.scheduler == "cosine" and cfg.train.warmup_ratio == 0.1 and cfg.train.max_steps == 2


def test_their_defaults_are_written_where_a_key_is_absent():
    conv = lf.convert({"model_name_or_path": "smollm2-135m-instruct", "stage": "sft", "finetuning_type": "lora",
                       "dataset": "identity", "lora_rank": 32, "default_system": "You are Wren."})
    c = conv.config
    assert c["data"]["system"] == "You are Wren."  # their default_system: the system prompt of rows without one
    assert c["method"]["lora"] == {"rank": 32, "alpha": 64, "targets": "all"}  # their alpha: twice the rank
    assert c["train"]["learning_rate"] == 5e-5 and c["train"]["scheduler"] == "linear"
    assert c["data"]["cutoff_len"] == 2048 and c["train"]["batch_size"] == 8
    assert c["data"]["template"] == "auto"  # no template named: theirs uses the tokenizer's own, as 'auto' does
    assert c["train"]["gradient_checkpointing"] is True  # on unless disable_gradient_checkpointing
    assert any("lr_scheduler_type: not set" in n for n in conv.notes)


QWEN_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."


@pytest.mark.parametrize("template,expect,same", [("chatml", "chatml", True), ("llama3", "llama3", True),
                                                   ("qwen", "auto", True), ("mistral", "mistral", False),
                                                   ("empty", None, False)])
def test_their_templates_map_to_ours_and_differences_are_said(template, expect, same, default_model_dir):
    """qwen: SmolLM2's own ChatML template writes what theirs does once their default system prompt is
    data.system (the model's own default names SmolLM instead)."""
    conv = lf.convert({"model_name_or_path": str(default_model_dir), "stage": "sft", "dataset": "identity",
                       "template": template})
    assert conv.config["data"].get("system", "") == (QWEN_SYSTEM if template == "qwen" else "")
    if expect is None:
        assert [e for e in conv.errors if e.startswith(f"template: template {template!r}: no Whetstone template")]
        return
    assert conv.config["data"]["template"] == expect
    said = conv.notes if same else conv.warnings
    assert any(s.startswith(f"template {template!r} -> {expect!r}") for s in said), said
    if not same:
        assert any("differs: theirs" in w for w in conv.warnings)


def test_their_default_system_wins_over_the_templates_default(default_model_dir):
    conv = lf.convert({"model_name_or_path": str(default_model_dir), "stage": "sft", "dataset": "identity",
                       "template": "qwen", "default_system": "You are Wren."})
    assert conv.config["data"]["system"] == "You are Wren." and conv.config["data"]["template"] == "auto"


def test_an_auto_template_is_chosen_when_the_models_own_renders_the_same(tmp_path, default_model_dir):
    """A model whose tokenizer carries plain ChatML: their chatml is the model's own template."""
    import shutil
    from engine.data import templates
    model = tmp_path / "plain-chatml"
    shutil.copytree(default_model_dir, model, ignore=shutil.ignore_patterns("*.safetensors"))
    cfg = json.loads((model / "tokenizer_config.json").read_text())
    cfg["chat_template"] = templates.BUILTIN["chatml"]
    (model / "tokenizer_config.json").write_text(json.dumps(cfg))
    for f in model.glob("chat_template.jinja"):
        f.unlink()
    conv = lf.convert({"model_name_or_path": str(model), "stage": "sft", "dataset": "identity", "template": "chatml"})
    assert conv.config["data"]["template"] == "auto"
    assert any("the model's own chat template writes exactly the same text" in n for n in conv.notes)


def test_a_whetstone_config_is_not_mistaken_for_theirs():
    assert lf.read(REPO / "presets" / "quickstart.yaml") is None
    assert not lf.looks_like_llamafactory(yaml.safe_load((REPO / "presets" / "dpo.yaml").read_text()))
