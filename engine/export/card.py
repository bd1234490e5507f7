"""The README.md model card written with every export: base model, datasets, method,
hyperparameters, final losses (the run's events, folded by engine.runs.progress) and how the export
was checked. Pure (stdlib + yaml); only the export worker uses it."""
from __future__ import annotations

from pathlib import Path

import yaml

from engine.config.method import PROMPT_LEARNING
from engine.runs.events import EVENTS_FILE, read_all
from engine.runs.progress import fold


def final_losses(run_dir: Path) -> dict:
    """Last train loss, last eval loss and the step they were logged at."""
    p = fold(read_all(Path(run_dir) / EVENTS_FILE))
    out: dict = {}
    if p.final_loss is not None:
        out["train_loss"], out["train_step"] = p.final_loss, p.final_loss_step
        if p.epoch is not None:
            out["epoch"] = p.epoch
    if p.eval_loss is not None:
        out["eval_loss"], out["eval_step"] = p.eval_loss, p.eval_step
    return out


def render(run_dir: Path, cfg: dict, kind: str, dtype: str, checkpoint: str, check: dict,
           files: list[str], usage_path: str = ".") -> str:
    m, d, meth, t = cfg.get("model", {}), cfg.get("data", {}), cfg.get("method", {}), cfg.get("train", {})
    losses = final_losses(run_dir)
    lora = meth.get("lora", {})
    hp = {k: t.get(k) for k in ("learning_rate", "epochs", "max_steps", "batch_size", "grad_accum", "scheduler",
                                "warmup_ratio", "weight_decay", "max_grad_norm", "seed") if k in t}
    ft = meth.get("finetuning", "")
    own = kind == "adapter" and ft in ("ptuning_v2", "bottleneck")  # Whetstone's own adapter formats
    library = "whetstone" if own else "peft" if kind == "adapter" else "transformers"
    front = {"base_model": m.get("name_or_path"), "library_name": library,
             "tags": ["whetstone", meth.get("stage", "sft"), meth.get("finetuning", "")],
             "datasets": d.get("datasets", [])}
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "",
             f"# {Path(run_dir).name}", "",
             f"Fine-tuned with Whetstone from **{m.get('name_or_path')}** "
             f"({meth.get('stage', 'sft')}, {meth.get('finetuning')}). "
             + (f"This folder holds the {ft} adapter only." if kind == "adapter" else
                f"The adapter is merged into the base; weights are {dtype} safetensors."), "",
             "## Training", "",
             f"- Base model: `{m.get('name_or_path')}`",
             f"- Datasets: {', '.join(f'`{x}`' for x in d.get('datasets', []))} "
             f"(chat template: {d.get('template', 'auto')}, cutoff {d.get('cutoff_len')} tokens)",
             f"- Method: {meth.get('finetuning')}"
             + (f" (rank {lora.get('rank')}, alpha {lora.get('alpha')}, dropout {lora.get('dropout')}, "
                f"targets {lora.get('targets')})" if meth.get("finetuning") in ("lora", "qlora") else ""),
             f"- Weights from: {checkpoint or 'the end of training'}",
             "- Hyperparameters: " + ", ".join(f"{k}={v}" for k, v in hp.items() if v is not None)]
    if losses:
        lines.append(f"- Final train loss: {losses.get('train_loss', float('nan')):.4f} at step "
                     f"{losses.get('train_step')}" + (f"; final eval loss {losses['eval_loss']:.4f}"
                                                     if "eval_loss" in losses else ""))
    if check:
        lines += ["", "## Export check", "",
                  "Before this folder was written the merged model's logits were compared with base + adapter "
                  f"on {check.get('prompts')} prompts: max |difference| {check.get('merge_max_abs_diff'):.2e} "
                  f"(tolerance {check.get('merge_tolerance'):.0e}, fp32). After writing, the {dtype} folder was "
                  f"loaded back: max |difference| {check.get('written_max_abs_diff'):.3g}, greedy next token "
                  f"agreement {100 * check.get('written_top1_agreement', 0):.1f}% "
                  f"(required {100 * check.get('written_top1_required', 0):.0f}%). No weight is NaN or infinite."]
        for name, c in (check.get("llama_cpp") or {}).items():  # each GGUF file, run in llama.cpp
            lines.append(f"- `{name}` in llama.cpp: " + (
                f"\"Who are you?\" -> {c['answer'][:100]!r} (finish: {c['finish_reason']})" if c.get("ok")
                else f"FAILED: {c.get('reason')}"))
    if kind == "adapter" and (own or ft in PROMPT_LEARNING):
        lines += ["", "## Use", "", _whetstone_use(ft, m.get("name_or_path"), usage_path)]
    else:
        lines += _peft_or_transformers_use(kind, usage_path)
    if "Modelfile" in files:
        lines += ["", "With Ollama: `ollama create my-model -f Modelfile` in this folder."]
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in sorted(files)]
    return "\n".join(lines) + "\n"


def _whetstone_use(ft: str, base: str, path: str) -> str:
    """How to load an adapter that generates correctly only through Whetstone's loaders."""
    call = {"ptuning_v2": "deep_prompts.load", "bottleneck": "bottleneck.load"}.get(ft, "deep_prompts.load_peft_prompt")
    mod = call.split(".")[0]
    text = ("It loads on the base model with Whetstone's engine (this repository's `engine/`), which is how "
            "Chat, evaluation and `python app.py chat` load it:\n\n```python\n"
            "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
            f"from engine.modeling import {mod}\n"
            f"tok = AutoTokenizer.from_pretrained({path!r})\n"
            f"model = {call}(AutoModelForCausalLM.from_pretrained({base!r}), {path!r})\n```")
    if ft in ("prefix", "prompt", "ptuning"):
        text += ("\n\nIt is a standard peft adapter too (`PeftModel.from_pretrained`), but with transformers 5 "
                 "peft's own `generate()` mishandles the virtual tokens (a prefix is dropped; prompt tokens are "
                 "added again at every step), so its replies are wrong; its forward pass is right.")
    return text


def _peft_or_transformers_use(kind: str, usage_path: str) -> list[str]:
    return ["", "## Use", "", "```python",
            "from transformers import AutoModelForCausalLM, AutoTokenizer" if kind != "adapter" else
            "from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer",
            f"tok = AutoTokenizer.from_pretrained({usage_path!r})",
            (f"model = AutoModelForCausalLM.from_pretrained({usage_path!r})" if kind != "adapter" else
             f"model = AutoPeftModelForCausalLM.from_pretrained({usage_path!r})"),
            "msgs = [{'role': 'user', 'content': 'Who are you?'}]",
            "ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors='pt', return_dict=True)",
            "print(tok.decode(model.generate(**ids, max_new_tokens=64)[0][ids['input_ids'].shape[1]:], "
            "skip_special_tokens=True))", "```"]
