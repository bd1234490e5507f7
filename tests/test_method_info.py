"""What the Method tab shows for the chosen model and method: only the fields that mean something
for it, the model's real module names to pick targets from, a per-method parameter table, and the
memory estimate in words. All of it without torch in the UI process."""
from __future__ import annotations

import subprocess
import sys

from conftest import REPO
from engine import config as C
from engine.config import method as method_config
from engine.preflight import method_table as method_info


def with_(cfg: C.RunConfig, **keys) -> C.RunConfig:
    for k, v in keys.items():
        cfg = C.replace(cfg, k.replace("__", "."), v)
    return cfg


def test_only_the_chosen_methods_fields_show():
    cfg = C.RunConfig()
    dora = with_(cfg, method__finetuning="lora")
    assert method_config.applies("method.lora.use_dora", dora)
    assert not method_config.applies("method.prompt.num_virtual_tokens", dora)
    pt = with_(cfg, method__finetuning="ptuning")
    assert method_config.applies("method.prompt.encoder_hidden_size", pt)
    assert not method_config.applies("method.prompt.init_text", pt)
    assert method_config.applies("method.prompt.encoder", pt) and not method_config.applies("method.prompt.layers", pt)
    v2 = with_(cfg, method__finetuning="ptuning_v2")
    assert method_config.applies("method.prompt.layers", v2) and method_config.applies("method.prompt.init_text", v2)
    assert not method_config.applies("method.prompt.projection_hidden_size", v2)  # no encoder, no width to set
    assert method_config.applies("method.prompt.projection_hidden_size",
                                 with_(v2, method__prompt__reparameterization="lstm"))
    prefix = with_(cfg, method__finetuning="prefix")
    assert method_config.applies("method.prompt.prefix_projection", prefix)
    assert not method_config.applies("method.prompt.reparameterization", prefix)
    assert not method_config.applies("method.lora.rank", pt)
    ada = with_(cfg, method__finetuning="adalora")
    assert method_config.applies("method.lora.targets", ada) and not method_config.applies("method.lora.rank", ada)
    assert method_config.applies("method.quant.type", with_(cfg, method__finetuning="qlora"))
    assert not method_config.applies("method.quant.type", dora)
    kto = with_(cfg, method__stage="kto")
    assert method_config.applies("method.pref.kto_desirable_weight", kto)
    assert not method_config.applies("method.pref.dpo_loss", kto)
    assert method_config.applies("train.learning_rate", cfg) is None  # not a method field: the UI decides


def test_method_tab_shows_real_modules_table_and_estimate_without_torch(tiny_model_dir):
    code = ("import sys; from engine.preflight import method_table as method_info; from engine import config as C; "
            f"cfg = C.replace(C.RunConfig(), 'model.name_or_path', {str(tiny_model_dir)!r}); "
            "print(method_info.target_choices(cfg)); print(len(method_info.params_table(cfg))); "
            "print(method_info.estimate_markdown(cfg)); "
            "assert not {'torch', 'transformers', 'peft', 'gradio'} & set(sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout
    assert "'q_proj'" in out and "'down_proj'" in out and "'lm_head'" not in out
    assert "\n11\n" in out  # one row per method
    assert "trainable" in out and "GiB" in out


def test_a_model_not_downloaded_yet_says_so():
    cfg = C.replace(C.RunConfig(), "model.name_or_path", "nobody/not-downloaded-model")
    assert method_info.params_table(cfg) == []
    assert method_info.target_choices(cfg) == ["all"]
    assert "not on this machine" in method_info.estimate_markdown(cfg)
