"""The run config: YAML round-trip, every validation error named, CLI overrides and help."""
import subprocess
import sys

import pytest
import yaml

from engine import config as C
from tests.conftest import REPO


def test_default_config_round_trips_through_yaml():
    cfg = C.RunConfig()
    text = C.to_yaml(cfg)
    assert yaml.safe_load(text)["schema_version"] == C.SCHEMA_VERSION
    assert C.from_yaml(text) == cfg


def test_every_field_round_trips_with_non_default_values(tmp_path):
    cfg = C.RunConfig()
    cfg = C.replace(cfg, "model.quantization", "8bit")
    cfg = C.replace(cfg, "model.dtype", "bf16")
    cfg = C.replace(cfg, "data.cutoff_len", 333)
    cfg = C.replace(cfg, "data.max_samples", 17)
    cfg = C.replace(cfg, "method.lora.targets", ["q_proj", "v_proj"])
    cfg = C.replace(cfg, "train.max_steps", 12)
    cfg = C.replace(cfg, "output.run_name", "my-run_1.0")
    path = tmp_path / "c.yaml"
    C.save(cfg, path)
    assert C.load(path) == cfg


def test_required_keys_exist_with_their_documented_names():
    keys = {k for k, *_ in C.iter_fields()}
    for k in ["model.name_or_path", "model.quantization", "model.dtype", "model.trust_remote_code",
              "data.datasets", "data.template", "data.cutoff_len", "data.val_size", "data.max_samples",
              "method.stage", "method.finetuning", "method.lora.rank", "method.lora.alpha", "method.lora.dropout",
              "method.lora.targets", "train.learning_rate", "train.epochs", "train.max_steps", "train.batch_size",
              "train.grad_accum", "train.scheduler", "train.warmup_ratio", "train.max_grad_norm", "train.seed",
              "train.logging_steps", "train.save_steps", "train.gradient_checkpointing", "output.run_name",
              "output.saves_dir"]:
        assert k in keys, k
    for k, tp, default, meta in C.iter_fields():
        assert meta.get("help"), f"{k} has no help text"


def test_one_error_lists_every_problem_by_field():
    bad = {"model": {"name_or_path": "./no/such/model", "dtype": "fp8", "colour": "red"},
           "data": {"datasets": ["missing.json"], "cutoff_len": -5},
           "train": {"learning_rate": -1, "batch_size": "four", "gradient_checkpointing": "yes",
                     "max_steps": 0},
           "method": {"finetuning": "magic", "lora": {"targets": "qv"}},
           "output": {"run_name": "../escape"},
           "typo_section": {}}
    with pytest.raises(C.ConfigError) as ei:
        C.from_dict(bad)
    problems = "\n".join(ei.value.problems)
    for field in ["model.colour", "model.dtype", "model.name_or_path", "data.datasets[0]", "data.cutoff_len",
                  "train.learning_rate", "train.batch_size", "train.gradient_checkpointing", "train.max_steps",
                  "method.finetuning", "method.lora.targets", "output.run_name", "typo_section"]:
        assert field in problems, f"{field} not named in:\n{problems}"
    assert len(ei.value.problems) >= 13


@pytest.mark.parametrize("key,value,word", [
    ("train.learning_rate", 0, "greater than"),
    ("train.epochs", float("nan"), "finite"),
    ("data.val_size", 0.95, "at most"),
    ("method.lora.rank", 0, "at least"),
    ("method.lora.dropout", "0.1", "number"),
    ("model.trust_remote_code", 1, "true or false"),
    ("data.datasets", "identity", "list"),
    ("train.scheduler", "exponential", "not one of"),
])
def test_each_bad_value_is_named_with_the_reason(key, value, word):
    d = C.to_dict(C.RunConfig())
    sec, *rest = key.split(".")
    node = d[sec]
    for part in rest[:-1]:
        node = node[part]
    node[rest[-1]] = value
    with pytest.raises(C.ConfigError) as ei:
        C.from_dict(d)
    assert any(key in p and word in p for p in ei.value.problems), ei.value.problems


def test_qlora_with_8bit_quantization_is_refused():
    d = C.to_dict(C.RunConfig())
    d["method"]["finetuning"] = "qlora"
    d["model"]["quantization"] = "8bit"
    with pytest.raises(C.ConfigError, match="model.quantization"):
        C.from_dict(d)


def test_newer_schema_is_refused_with_upgrade_hint():
    with pytest.raises(C.ConfigError, match="upgrade"):
        C.from_dict({"schema_version": 99})


def test_overrides_set_dotted_keys_with_yaml_values(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: {batch_size: 2}\n")
    cfg = C.load(p, ["train.max_steps=7", "method.lora.targets=[q_proj, v_proj]", "model.dtype=bf16"])
    assert cfg.train.max_steps == 7 and cfg.train.batch_size == 2
    assert cfg.method.lora.targets == ["q_proj", "v_proj"] and cfg.model.dtype == "bf16"


def test_replace_returns_a_new_config_and_leaves_the_old_one():
    a = C.RunConfig()
    b = C.replace(a, "method.lora.rank", 64)
    assert a.method.lora.rank == 8 and b.method.lora.rank == 64


def test_train_help_lists_every_field_with_type_default_and_help():
    out = subprocess.run([sys.executable, "app.py", "train", "--help"], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0
    for key, tp, default, meta in C.iter_fields():
        assert key in out.stdout, key
        assert meta["help"].split()[0] in out.stdout
    assert "'lora' | 'qlora' | 'full' | 'freeze'" in out.stdout


def test_bad_config_from_cli_lists_problems_and_creates_no_run_folder(tmp_path):
    cfg = tmp_path / "bad.yaml"
    saves = tmp_path / "saves"
    cfg.write_text(yaml.safe_dump({
        "model": {"name_or_path": "smollm2-135m-instruct", "unknown_key": 1},
        "data": {"datasets": [str(tmp_path / "nope.jsonl")]},
        "train": {"learning_rate": -0.1, "batch_size": "big"},
        "output": {"saves_dir": str(saves)}}))
    out = subprocess.run([sys.executable, "app.py", "train", str(cfg)], cwd=REPO, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    for field in ["model.unknown_key", "data.datasets[0]", "train.learning_rate", "train.batch_size"]:
        assert field in out.stderr
    assert not saves.exists() or not [p for p in saves.iterdir() if not p.name.startswith(".")]


def test_a_config_from_when_packing_was_an_on_off_switch_still_loads():
    d = C.to_dict(C.RunConfig())
    d["train"]["packing"] = True
    assert C.from_dict(d).train.packing == "on"
    d["train"]["packing"] = False
    assert C.from_dict(d).train.packing == "off"


def test_exponent_numbers_are_numbers_in_a_file_and_in_set(tmp_path):
    """`1e-4` as users write it (PyYAML alone reads it as text, and the learning rate would be refused)."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  learning_rate: 3e-4\n  weight_decay: 1E-2\n")
    cfg = C.load(path, ["train.max_grad_norm=5e-1"])
    assert (cfg.train.learning_rate, cfg.train.weight_decay, cfg.train.max_grad_norm) == (3e-4, 1e-2, 0.5)
    assert C.load(path, ["output.run_name=1e4x"]).output.run_name == "1e4x"  # text stays text
