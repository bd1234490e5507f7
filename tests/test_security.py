"""Safe by default: the server binds this machine only, serving beyond it needs a login or an explicit
--insecure, nothing runs through a shell, runs stay inside saves/, a model's own code runs only when
ticked (with a warning), weights come from safetensors only."""
from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine import config as C
from engine.runs import launcher
from engine.runs.store import list_runs, run_path
from tests.conftest import REPO


def test_the_app_binds_127_0_0_1_unless_told_otherwise():
    import inspect
    from webui.app import launch
    assert inspect.signature(launch).parameters["host"].default == "127.0.0.1"
    out = subprocess.run([sys.executable, "app.py", "--help"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert "default 127.0.0.1" in out.stdout


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::"])
def test_serving_beyond_this_machine_without_a_login_is_refused(host):
    out = subprocess.run([sys.executable, "app.py", "--host", host, "--port", "1"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "--auth" in out.stderr and "--insecure" in out.stderr, out.stderr


def test_the_launch_function_refuses_too_not_only_the_cli():
    from webui.app import launch
    with pytest.raises(SystemExit) as e:
        launch(host="0.0.0.0", port=1)
    assert "password" in str(e.value)


def test_auth_must_name_a_user_and_a_password():
    out = subprocess.run([sys.executable, "app.py", "--host", "0.0.0.0", "--auth", "admin"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "USER:PASSWORD" in out.stderr


def _python_files():
    for p in REPO.rglob("*.py"):
        rel = p.relative_to(REPO).parts
        if rel[0].startswith(".") or rel[0] in ("saves", "node_modules") or "site-packages" in rel:
            continue
        yield p


def test_no_shell_anywhere_in_the_tree():
    """No subprocess call that runs through a shell (shell keyword true), and no os.system / os.popen, in any Python file of the project."""
    offenders = []
    for path in _python_files():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                        offenders.append(f"{path}:{node.lineno} shell=")
                f = node.func
                if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "os" and \
                        f.attr in ("system", "popen", "execl", "execlp", "spawnl"):
                    offenders.append(f"{path}:{node.lineno} os.{f.attr}")
    assert not offenders, offenders


def _run_folder(saves: Path, name: str) -> Path:
    d = saves / name
    d.mkdir(parents=True)
    cfg = C.replace(C.replace(C.RunConfig(), "output.saves_dir", str(saves)), "output.run_name", name)
    C.save(cfg, d / "config.yaml")
    return d


def test_a_run_folder_that_is_a_symlink_to_elsewhere_is_ignored_and_cannot_be_resumed(tmp_path):
    saves = tmp_path / "saves"
    _run_folder(saves, "real")
    outside = _run_folder(tmp_path / "elsewhere", "victim")
    (saves / "planted").symlink_to(outside, target_is_directory=True)
    assert [s.name for s in list_runs(saves)] == ["real"]
    with pytest.raises(launcher.LaunchError) as e:
        launcher.resume(saves / "planted")
    assert "symlink" in str(e.value)
    assert not (outside / "stdout.log").exists() and not (outside / "worker.json").exists()


@pytest.mark.parametrize("name", ["../elsewhere/victim", "..", ".", "/etc", "planted", "a/b", "real/../real"])
def test_run_names_from_the_browser_never_reach_outside_saves(tmp_path, name):
    saves = tmp_path / "saves"
    _run_folder(saves, "real")
    outside = _run_folder(tmp_path / "elsewhere", "victim")
    (saves / "planted").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ValueError):
        run_path(saves, name)
    assert run_path(saves, "real") == saves / "real"


def test_a_dangling_symlink_with_the_run_name_is_not_written_through(tmp_path):
    saves = tmp_path / "saves"
    saves.mkdir()
    target = tmp_path / "target-not-yet"
    (saves / "myrun").symlink_to(target)
    cfg = C.replace(C.replace(C.RunConfig(), "output.saves_dir", str(saves)), "output.run_name", "myrun")
    with pytest.raises(launcher.LaunchError):
        launcher.create_run(cfg)
    assert not target.exists()


def test_trust_remote_code_is_off_by_default_and_warned_about_when_ticked():
    from webui import fields
    from webui import state as S
    from webui.form import problems_markdown
    assert C.RunConfig().model.trust_remote_code is False
    st = S.RunState(config=C.RunConfig())
    assert "trust_remote_code" not in problems_markdown(st)
    ticked = S.set_field(st, "model.trust_remote_code", True)
    shown = problems_markdown(ticked)
    assert "Warning" in shown and "run inside the training worker" in shown
    w = fields.widget("model.trust_remote_code", False)
    assert "trust" in w.info.lower() and w.value is False


def _model_with_code(tmp_path: Path, tiny_model_dir: Path) -> tuple[Path, Path]:
    """A model folder whose config asks for its own Python code, which leaves a marker when it runs."""
    d = tmp_path / "remote-code-model"
    d.mkdir()
    for f in tiny_model_dir.iterdir():
        if f.name != "config.json":
            (d / f.name).write_bytes(f.read_bytes())
    marker = tmp_path / "code-ran"
    cfg = json.loads((tiny_model_dir / "config.json").read_text())
    cfg.update(model_type="evil", auto_map={"AutoConfig": "modeling_evil.EvilConfig",
                                            "AutoModelForCausalLM": "modeling_evil.EvilModel"})
    (d / "config.json").write_text(json.dumps(cfg))
    (d / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n"
                                        "from transformers import LlamaConfig, LlamaForCausalLM\n"
                                        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
                                        "class EvilModel(LlamaForCausalLM):\n    config_class = EvilConfig\n")
    return d, marker


def test_a_models_own_code_does_not_run_unless_trust_remote_code_is_ticked(tmp_path, tiny_model_dir):
    from engine.modeling.load import ModelLoadError, load_model
    folder, marker = _model_with_code(tmp_path, tiny_model_dir)
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(folder))
    with pytest.raises(ModelLoadError) as e:
        load_model(cfg)
    assert not marker.exists(), "the model's code ran without trust_remote_code"
    assert str(folder) in str(e.value)


def test_pickle_only_weights_are_refused_with_a_clear_message(tmp_path, tiny_model_dir):
    """A model folder with only pytorch_model.bin: refused at Start and by the loader; safetensors load."""
    import torch
    from safetensors.torch import load_file
    from engine.modeling.load import ModelLoadError, load_model
    d = tmp_path / "bin-only"
    d.mkdir()
    for f in tiny_model_dir.iterdir():
        if not f.name.endswith(".safetensors"):
            (d / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(tiny_model_dir / "model.safetensors"), d / "pytorch_model.bin")
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(d))
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(C.to_dict(cfg))
    assert any("only pickle" in p and "safetensors" in p for p in e.value.problems), e.value.problems
    with pytest.raises(ModelLoadError) as e2:
        load_model(cfg)  # the worker's own guard, for a folder that changed after Start
    assert "only pickle (.bin)" in str(e2.value)
    ok = C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))
    assert load_model(ok) is not None


@pytest.mark.parametrize("name", ["..escape.json", "x;rm -rf ~.jsonl", "$(id).csv", "..json", "ünï cödé.json",
                                  "a" * 240 + ".json", ".hidden.jsonl", "CON.JSON"])
def test_uploads_land_under_the_uploads_folder_with_safe_names(tmp_path, monkeypatch, name):
    from webui.dataset_preview import save_upload
    uploads = tmp_path / "uploads"
    monkeypatch.setenv("WHETSTONE_UPLOADS", str(uploads))
    src = tmp_path / "incoming" / name  # the file name a browser (or a crafted request) sent
    src.parent.mkdir()
    src.write_text('[{"instruction": "hi", "output": "hello"}]')
    kept = Path(save_upload(str(src)))
    assert kept.parent == uploads and kept.is_file() and not kept.is_symlink()
    assert len(kept.name) <= 90 and all(c.isalnum() or c in "._-" for c in kept.name), kept.name
    assert not kept.name.startswith(".") and kept.suffix in (".json", ".jsonl", ".csv")


def test_an_upload_never_writes_through_a_symlink_planted_in_the_uploads_folder(tmp_path, monkeypatch):
    from webui.dataset_preview import save_upload
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    monkeypatch.setenv("WHETSTONE_UPLOADS", str(uploads))
    victim = tmp_path / "victim.json"
    victim.write_text("precious")
    (uploads / "data.json").symlink_to(victim)
    (uploads / "fresh.json").symlink_to(tmp_path / "created-outside.json")  # dangling: the target is new
    for name in ("data.json", "fresh.json"):
        src = tmp_path / "incoming" / name
        src.parent.mkdir(exist_ok=True)
        src.write_text('[{"instruction": "hi", "output": "hello"}]')
        kept = Path(save_upload(str(src)))
        assert kept.parent == uploads and not kept.is_symlink() and kept.read_text() == src.read_text()
    assert victim.read_text() == "precious"
    assert not (tmp_path / "created-outside.json").exists()


def test_an_upload_of_another_file_type_is_refused(tmp_path, monkeypatch):
    from engine.data.files import DataError
    from webui.dataset_preview import save_upload
    monkeypatch.setenv("WHETSTONE_UPLOADS", str(tmp_path / "uploads"))
    src = tmp_path / "run.sh"
    src.write_text("#!/bin/sh\necho hi\n")
    with pytest.raises(DataError):
        save_upload(str(src))
    assert not (tmp_path / "uploads").exists() or not list((tmp_path / "uploads").iterdir())
