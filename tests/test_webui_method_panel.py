"""The Method tab's read-outs follow the config being edited: choosing a bigger batch raises the
memory estimate shown, the table marks the chosen method, and the model's module names are listed."""
from __future__ import annotations

import gradio as gr

from engine import config as C
from webui import fields, method_panel


def test_readouts_follow_the_config(tiny_model_dir):
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))
    with gr.Blocks():
        views = method_panel.build(cfg)
    small = views.values(C.replace(cfg, "train.batch_size", 1))
    big = views.values(C.replace(cfg, "train.batch_size", 64))

    def gib(md: str) -> float:
        return float(md.split("Estimated peak GPU memory: **")[1].split(" GiB")[0])

    assert gib(big[views.estimate]) > gib(small[views.estimate])
    rows = small[views.table]["value"]
    assert [r[0] for r in rows if "(chosen)" in r[0]] == ["lora (chosen)"]
    assert "`q_proj`" in small[views.modules] and "`down_proj`" in small[views.modules]


def test_method_fields_show_and_hide_with_the_method():
    cfg = C.replace(C.RunConfig(), "method.finetuning", "ptuning")
    assert fields.applies("method.prompt.encoder_hidden_size", cfg)
    assert not fields.applies("method.lora.rank", cfg)
    assert fields.applies("method.pref.beta", C.replace(cfg, "method.stage", "dpo"))
    assert not fields.applies("method.pref.beta", cfg)
    # module-name lists are edited as comma-separated text
    assert fields.to_config("method.freeze.trainable_modules", "mlp, self_attn.o_proj") == ["mlp", "self_attn.o_proj"]
    assert fields.to_config("method.ia3.targets", "all") == "all"
