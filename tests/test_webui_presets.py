"""Presets and the command line: what the UI shows is exactly what the headless command would run."""
from __future__ import annotations

import shlex

import yaml

from engine import config as C
from webui import presets


def run_cli_in_mind(command: str) -> C.RunConfig:
    """Parse `python app.py train FILE --set k=v ...` the way the CLI does."""
    argv = shlex.split(command)
    assert argv[:3] == ["python", "app.py", "train"]
    file, rest = argv[3], argv[4:]
    sets = [rest[i + 1] for i in range(0, len(rest), 2) if rest[i] == "--set"]
    return C.load(file, overrides=sets, check_files=False)


def test_the_shown_command_reproduces_the_edited_config(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "REPO", tmp_path)
    monkeypatch.chdir(tmp_path)
    base = C.RunConfig()
    path = presets.save(base, "base", folder=tmp_path / "presets")
    cfg = base
    for key, value in [("method.lora.rank", 32), ("train.learning_rate", 5e-5), ("train.max_steps", 7),
                       ("data.datasets", ["identity", "my data/rows.jsonl"]), ("method.lora.targets", ["q_proj", "v_proj"]),
                       ("model.name_or_path", "Qwen/Qwen2.5-0.5B-Instruct"), ("output.run_name", "true"),
                       ("train.gradient_checkpointing", True), ("data.template", "none")]:
        cfg = C.replace(cfg, key, value)
    command = presets.cli_command(cfg, str(path))
    assert command.startswith("python app.py train presets/base.yaml --set ")
    assert run_cli_in_mind(command) == cfg


def test_an_unchanged_preset_needs_no_overrides(tmp_path, monkeypatch):
    monkeypatch.setattr(presets, "REPO", tmp_path)
    path = presets.save(C.RunConfig(), "plain", folder=tmp_path)
    assert presets.cli_command(C.RunConfig(), str(path)) == "python app.py train plain.yaml"


def test_saving_a_preset_writes_loadable_yaml_without_the_run_name(tmp_path):
    cfg = C.replace(C.replace(C.RunConfig(), "method.lora.rank", 64), "output.run_name", "run-1")
    path = presets.save(cfg, "mine", folder=tmp_path)
    assert presets.names(tmp_path) == ["mine"]
    again = presets.load("mine", folder=tmp_path)
    assert again.method.lora.rank == 64 and again.output.run_name == ""
    assert yaml.safe_load(path.read_text())["schema_version"] == C.SCHEMA_VERSION


def test_a_preset_name_with_a_slash_is_refused(tmp_path):
    try:
        presets.save(C.RunConfig(), "../evil", folder=tmp_path)
    except C.ConfigError as e:
        assert "preset name" in e.problems[0]
    else:
        raise AssertionError("a path-like preset name was accepted")
    assert list(tmp_path.iterdir()) == []
