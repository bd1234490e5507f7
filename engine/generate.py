"""Loading a tuned model for generation, and answering prompts with the chat template the run
trained with (saved with its adapter / model). Heavy module."""
from __future__ import annotations

from pathlib import Path

import torch

from engine import config as C
from engine import models


def load_run(run_dir: str | Path | None, base: str | None = None):
    """(model, tokenizer) for a run's final adapter or model; with run_dir None, the base model."""
    if run_dir is None:
        cfg = C.RunConfig()
        if base:
            cfg = C.replace(cfg, "model.name_or_path", base)
        path = models.resolve_path(cfg.model.name_or_path)
        tok = models.load_tokenizer(cfg, path)
        return models.load_model(cfg, path, quantize=False).eval(), tok
    run_dir = Path(run_dir)
    out = run_dir / "adapter" if (run_dir / "adapter").is_dir() else run_dir / "model"
    if not out.is_dir():
        out = run_dir  # a checkpoint or an adapter folder given directly
    cfg_path = out / "whetstone_config.yaml"
    cfg = C.load(cfg_path, check_files=False) if cfg_path.is_file() else C.load(run_dir / "config.yaml",
                                                                               check_files=False)
    tok = models.load_tokenizer(cfg, str(out))
    from engine import bottleneck
    if bottleneck.is_bottleneck_folder(out):
        model = bottleneck.load(models.load_model(cfg), out)
    elif (out / "adapter_config.json").is_file():
        from peft import PeftModel
        base_model = models.load_model(cfg, quantize=models.quantization_of(cfg) != "none")
        model = PeftModel.from_pretrained(base_model, str(out))
    else:
        model = models.load_model(cfg, str(out), quantize=False)
    return model.eval(), tok


@torch.no_grad()
def answer(model, tok, messages: list[dict], max_new_tokens: int = 64, **gen) -> str:
    enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    enc = {k: v.to(model.device) for k, v in enc.items()}
    gen.setdefault("do_sample", False)
    from engine.data.templates import stop_token_ids  # the run's template's own end-of-turn token(s)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tok.pad_token_id,
                         eos_token_id=stop_token_ids(tok) or tok.eos_token_id, **gen)
    return tok.decode(out[0][enc["input_ids"].shape[1]:], skip_special_tokens=True).strip()
