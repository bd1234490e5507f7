"""The shared run state and the config form: every field reachable, the right widget for its type,
edits that return a new config, fields hidden where they do not apply."""
from __future__ import annotations

import gradio as gr
import pytest

from engine import config as C
from webui import dataset, fields, hyperparams, method
from webui import state as S


def test_an_edit_returns_a_new_state_and_leaves_the_old_one_alone():
    before = S.RunState(config=C.RunConfig())
    after = S.set_field(before, "method.lora.rank", 32)
    assert after.config.method.lora.rank == 32
    assert before.config.method.lora.rank == 8
    assert after.config.train == before.config.train


def test_choosing_qlora_sets_4bit_and_going_back_to_lora_clears_it():
    st = S.RunState(config=C.RunConfig())
    q = S.set_field(st, "method.finetuning", "qlora")
    assert q.config.model.quantization == "4bit"
    back = S.set_field(q, "method.finetuning", "lora")
    assert back.config.model.quantization == "none"
    eight = S.set_field(S.set_field(st, "model.quantization", "8bit"), "method.finetuning", "full")
    assert eight.config.model.quantization == "none"  # full tuning cannot train quantised weights


def test_lora_settings_hide_for_full_tuning_and_freeze_settings_show_for_freeze():
    cfg = C.RunConfig()
    assert fields.applies("method.lora.rank", cfg)
    assert not fields.applies("method.freeze.trainable_layers", cfg)
    full = C.replace(cfg, "method.finetuning", "full")
    assert not fields.applies("method.lora.rank", full)
    assert not fields.applies("model.quantization", full)
    freeze = C.replace(cfg, "method.finetuning", "freeze")
    assert fields.applies("method.freeze.trainable_layers", freeze)


def test_eval_steps_only_shows_when_there_is_a_validation_split():
    cfg = C.RunConfig()
    assert not fields.applies("train.eval_steps", cfg)
    assert fields.applies("train.eval_steps", C.replace(cfg, "data.val_size", 0.1))


def test_every_config_field_has_a_widget_in_some_tab():
    shown = {"model.name_or_path", "output.run_name", *dataset.KEYS, *method.ALL_KEYS, *hyperparams.LEFT,
             *hyperparams.RIGHT, *hyperparams.DIST}
    every = {key for key, *_ in C.iter_fields()}
    # saves_dir is the app's runs folder (WHETSTONE_SAVES), shown above the runs list, not a per-run choice
    assert every - shown == {"output.saves_dir"}


def test_widgets_follow_the_field_types():
    cfg = C.RunConfig()
    with gr.Blocks():
        built = {w.key: w.component for w in fields.build([k for k, *_ in C.iter_fields()], cfg)}
    assert isinstance(built["method.lora.rank"], gr.Slider)
    assert isinstance(built["method.lora.alpha"], gr.Slider)
    assert isinstance(built["method.lora.dropout"], gr.Slider)
    # a slider's range is the field's own: what the widget offers, the config accepts
    assert (built["method.lora.rank"].minimum, built["method.lora.rank"].maximum) == (1, 1024)
    assert (built["method.lora.dropout"].minimum, built["method.lora.dropout"].maximum) == (0.0, 0.9)
    assert isinstance(built["train.batch_size"], gr.Number) and built["train.batch_size"].precision == 0
    assert isinstance(built["train.learning_rate"], gr.Number) and built["train.learning_rate"].precision is None
    assert isinstance(built["train.gradient_checkpointing"], gr.Checkbox)
    assert isinstance(built["train.scheduler"], (gr.Radio, gr.Dropdown))
    assert [c[1] for c in built["model.quantization"].choices] == ["none", "8bit", "4bit"]
    assert built["train.batch_size"].minimum == 1 and built["train.batch_size"].maximum == 4096
    assert "Peak learning rate" in built["train.learning_rate"].info  # the config's own help text
    assert built["method.freeze.trainable_layers"].visible is False  # lora is the default method


@pytest.mark.parametrize("key, shown, held", [
    ("train.max_steps", None, None),
    ("train.max_steps", 20.0, 20),
    ("train.batch_size", 8.0, 8),
    ("method.lora.alpha", 32, 32.0),
    ("method.lora.rank", 16.0, 16),
    ("method.lora.targets", "all", "all"),
    ("method.lora.targets", "q_proj, v_proj", ["q_proj", "v_proj"]),
    ("data.max_samples", "", None),
    ("output.run_name", None, ""),
])
def test_widget_values_become_config_values_of_the_right_type(key, shown, held):
    value = fields.to_config(key, shown)
    assert value == held and type(value) is type(held)


def test_a_widget_value_round_trips_through_the_config():
    cfg = C.replace(C.RunConfig(), "method.lora.targets", ["q_proj", "v_proj"])
    shown = fields.to_widget("method.lora.targets", cfg.method.lora.targets)
    assert fields.to_config("method.lora.targets", shown) == ["q_proj", "v_proj"]


def test_start_refuses_a_bad_config_and_writes_nothing(tmp_path):
    st = S.RunState(config=C.replace(C.replace(C.RunConfig(), "output.saves_dir", str(tmp_path)),
                                     "data.datasets", ["no/such/file.json"]))
    with pytest.raises(C.ConfigError) as err:
        S.start(st)
    assert any("data.datasets[0]" in p for p in err.value.problems)
    assert [p for p in tmp_path.iterdir() if not p.name.startswith(".")] == []  # no run folder, not even half
    assert any("data.datasets[0]" in p for p in S.problems(st))


def test_start_refuses_data_with_bad_rows_naming_the_row_and_writes_nothing(tmp_path):
    """The UI's Start runs the same row check as the CLI: a file that would fail the worker gets no run folder."""
    from engine.runs import launcher
    data = tmp_path / "qa.jsonl"
    data.write_text('{"instruction": "Who are you?", "output": "Wren."}\n'
                    '{"instruction": "Name?"}\n'
                    '{"instruction": "Maker?", "output": "Whetstone Labs."}\n', encoding="utf-8")
    saves = tmp_path / "saves"
    cfg = C.replace(C.replace(C.RunConfig(), "output.saves_dir", str(saves)), "data.datasets", [str(data)])
    with pytest.raises(launcher.LaunchError) as err:
        S.start(S.RunState(config=cfg))
    msg = str(err.value)
    assert "qa.jsonl" in msg and "line 2" in msg and "output" in msg, msg
    assert not saves.exists() or [p for p in saves.iterdir() if not p.name.startswith(".")] == []
