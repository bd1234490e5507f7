"""Bad input gets a clear error and changes nothing on disk: fuzzed configs and widget values, hostile
run names, model paths that are not models. (Dataset files are fuzzed in test_bad_datasets.py.)"""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import chat as CS
from engine import config as C
from engine.config import export as X
from engine.runs import launcher
from webui import state as S

KEYS = [k for k, *_ in C.iter_fields()]
SECTIONS = sorted({k.split(".")[0] for k in KEYS})

# Anything YAML or a browser can hand over: wrong types, out-of-range and huge numbers, empty and
# enormous text, path tricks, nested junk.
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=-(2 ** 200), max_value=2 ** 200),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
    st.sampled_from(["", " ", "../../etc", "/", "~", "a/b", "$(id)", "`id`", "x;rm -rf ~", "\x00", "é" * 5000,
                     "a/" + "b" * 300, "/tmp/" + "é" * 200, "d" * 5000, "org/" + "n" * 256,
                     "lora", "4bit", "cosine", "all", "identity", "1e400", "-1", "NaN"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                      max_leaves=12)


@st.composite
def raw_configs(draw):
    """A config dict with a handful of real keys (and sometimes unknown ones) set to arbitrary values."""
    data: dict = {}
    for key in draw(st.lists(st.sampled_from(KEYS), max_size=6)):
        node = data
        *path, leaf = key.split(".")
        for part in path:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = draw(values)
    if draw(st.booleans()):
        data[draw(st.sampled_from(SECTIONS + ["bogus", "schema_version"]))] = draw(values)
    return data


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=raw_configs())
def test_the_config_loader_answers_any_input_with_a_config_or_one_config_error(data):
    try:
        cfg = C.from_dict(data)
    except C.ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
        return
    assert isinstance(cfg, C.RunConfig)
    assert C.from_dict(C.to_dict(cfg)) == cfg  # what loads, round-trips


@settings(max_examples=150, deadline=None)
@given(text=st.one_of(st.text(max_size=300), st.binary(max_size=300).map(lambda b: b.decode("latin-1")),
                      st.sampled_from(["[" * 5000, "{a: " * 3000, "*a", "&a [*a]", "!!python/object:os.system {}",
                                       "model: !!binary AAAA", "a: b\n\tc: d", "- 1\n- 2", "model:\n  dtype: [",
                                       "\ufeffmodel: {}", "%YAML 9.9\n---\n{}"])))
def test_a_config_file_of_any_text_loads_or_gives_a_config_error(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "c.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        C.load(path)
    except C.ConfigError as e:
        assert e.problems


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KEYS), value=values)
def test_any_widget_value_either_starts_a_whole_run_folder_or_changes_nothing(tmp_path, key, value):
    """What a browser (or a script posting to the API) can put in one field, straight into the state."""
    saves = tmp_path / "saves"
    saves.mkdir(exist_ok=True)
    before = _tree(tmp_path)
    st_ = S.set_field(S.RunState(config=C.replace(C.RunConfig(), "output.saves_dir", str(saves))), key, value)
    if key == "output.saves_dir":  # the app pins its own saves folder; keep the fuzzed one inside tmp
        st_ = S.RunState(config=C.replace(st_.config, "output.saves_dir", str(saves)))
    try:
        run_dir = launcher.create_run(st_.config)  # what Start does before it spawns the worker
    except (C.ConfigError, launcher.LaunchError) as e:
        assert str(e)
        assert _tree(tmp_path) == before, "a refused config left something on disk"
        return
    # Accepted: the folder is whole and its config reads back as a valid config.
    assert run_dir.parent == saves and (run_dir / "config.yaml").is_file()
    C.load(run_dir / "config.yaml")
    import shutil
    shutil.rmtree(run_dir)


HOSTILE_NAMES = ["../escape", "../../tmp/x", "a/b", "/abs", "./here", "..", ".", "x;touch pwned", "$(touch pwned)",
                 "`touch pwned`", "a b", "a|b", "a&&b", "-rf", ".hidden", "name\nnext", "nul\x00byte", "é", "x" * 101]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_run_names_are_refused_and_nothing_is_written(tmp_path, name):
    work = tmp_path / "work"
    saves = work / "saves"
    saves.mkdir(parents=True)
    cfg = C.replace(C.replace(C.RunConfig(), "output.saves_dir", str(saves)), "output.run_name", name)
    before = _tree(tmp_path)
    cwd = os.getcwd()
    os.chdir(work)
    try:
        with pytest.raises(C.ConfigError) as e:
            S.start(S.RunState(config=cfg))
    finally:
        os.chdir(cwd)
    assert any(p.startswith("output.run_name") for p in e.value.problems), e.value.problems
    assert _tree(tmp_path) == before
    assert not list(tmp_path.rglob("pwned"))


def _model_problem(name: str) -> list[str]:
    cfg = C.replace(C.RunConfig(), "model.name_or_path", name)
    try:
        C.from_dict(C.to_dict(cfg))
    except C.ConfigError as e:
        return [p for p in e.problems if p.startswith("model.name_or_path")]
    return []


def test_model_paths_that_are_not_models_are_refused_before_start(tmp_path):
    (tmp_path / "file.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    pick = tmp_path / "pickled"
    pick.mkdir()
    (pick / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (pick / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    cases = {str(tmp_path / "missing"): "no folder", str(tmp_path / "file.txt"): "is a file",
             str(tmp_path / "empty"): "without config.json", str(pick): "only pickle",
             "not a model at all": "neither", "": "must not be empty",
             # names no file system accepts: every stat() on them raises "File name too long"
             "é" * 5000: "paths stop at 4096", str(tmp_path / ("n" * 300)): "stop at 255", "a\x00b": "NUL"}
    for name, words in cases.items():
        found = _model_problem(name)
        assert found and words in found[0], (name, found)


def test_a_folder_with_a_broken_config_json_fails_to_load_with_a_clear_reason(tmp_path):
    from engine.modeling.load import ModelLoadError, load_model
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "config.json").write_text("{not json")
    (bad / "model.safetensors").write_bytes(b"garbage")
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(bad))
    with pytest.raises(ModelLoadError) as e:
        load_model(cfg)
    assert "Could not load" in str(e.value) and str(bad) in str(e.value)


@pytest.mark.parametrize("name,words", [("é" * 5000, "paths stop at 4096"), ("data/" + "n" * 300 + ".json", "stop at 255"),
                                        ("a\x00b.json", "NUL")])
def test_dataset_names_no_file_system_accepts_get_a_config_error_naming_the_field(name, words):
    cfg = C.replace(C.RunConfig(), "data.datasets", [name])
    with pytest.raises(C.ConfigError) as e:
        C.from_dict(C.to_dict(cfg))
    found = [p for p in e.value.problems if p.startswith("data.datasets[0]")]
    assert found and words in found[0], e.value.problems


EXPORT_KEYS = [f.name for f in dataclasses.fields(X.ExportConfig)]
CHAT_KEYS = [f.name for f in dataclasses.fields(CS.GenerationParams)] + [f.name for f in dataclasses.fields(CS.ChatSource)]


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(EXPORT_KEYS + ["bogus"]), values, max_size=5))
def test_the_export_settings_answer_any_input_with_settings_or_named_problems(data):
    """`python app.py export --config x.yaml` and the Export tab: wrong types are named, never a TypeError."""
    try:
        cfg = X.from_dict(data)
    except X.ExportConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)
        return
    assert isinstance(cfg, X.ExportConfig)


@settings(max_examples=300, deadline=None)
@given(data=st.dictionaries(st.sampled_from(CHAT_KEYS), values, max_size=5))
def test_chat_settings_of_any_type_get_named_problems_not_a_crash(data):
    """What the chat client sends its worker (sampling settings, the model to load), checked before use."""
    params = CS.params_from_dict(data)
    assert all(isinstance(p, str) for p in params.problems())
    source = CS.source_from_dict(data)
    assert source.problem() is None or isinstance(source.problem(), str)


def test_an_export_config_file_that_is_not_yaml_or_not_readable_is_one_named_problem(tmp_path):
    bad = tmp_path / "export.yaml"
    bad.write_text("kind: [merged\n")
    with pytest.raises(X.ExportConfigError) as e:
        X.load(bad)
    assert "not valid YAML" in e.value.problems[0]
    with pytest.raises(X.ExportConfigError) as e:
        X.load(tmp_path / "missing.yaml")
    assert "cannot read" in e.value.problems[0]
    bad.write_text("run_dir: 7\nkind: zip\nverify_prompts: many\n")
    with pytest.raises(X.ExportConfigError) as e:
        X.load(bad)
    assert {p.split(":")[0] for p in e.value.problems} == {"run_dir", "kind", "verify_prompts"}, e.value.problems
