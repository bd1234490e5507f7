"""The parts of bench/gpu_acceptance.py that use torch, each run in its own process by the orchestrator
(`--part NAME`): environment, kernels (varlen vs padded, Liger vs plain), models (random-initialised
Llama shapes written as safetensors), workers (the real training worker on written configs, with the
memory estimate beside each measured peak). Each returns one dict of figures; "ok": False fails the part.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHAPES = {  # as bench/speed.py's peer uses them (TinyLlama-1.1B and Llama-3-8B); vocab covers the tokenizer
    "tiny": dict(hidden_size=256, intermediate_size=688, num_hidden_layers=4, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=49152),
    "1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
               num_key_value_heads=4, vocab_size=49152),
    "8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=8, vocab_size=128256),
}


def tokenizer_dir() -> Path:
    """The default model's tokenizer: carried in .gpu/model on the GPU machine, the cached model here."""
    carried = REPO / ".gpu" / "model"
    if (carried / "tokenizer.json").is_file():
        return carried
    from engine.modeling.load import ensure_embedded
    return ensure_embedded("smollm2-135m-instruct")


def environment(plan: dict) -> dict:
    import importlib.metadata as md

    import torch

    from engine.modeling import varlen
    from engine.modeling.attention import packed_kernel
    out = {"torch": torch.__version__, "cuda": torch.cuda.is_available()}
    for pkg in ("transformers", "peft", "accelerate", "bitsandbytes", "liger-kernel", "trl", "datasets",
                "deepspeed", "flash-attn"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = None
    fn, params = varlen._torch_varlen()
    out["torch_varlen_attn"] = sorted(params) if fn else None
    if out["cuda"]:
        out["device"] = torch.cuda.get_device_name()
        out["capability"] = ".".join(map(str, torch.cuda.get_device_capability()))
        out["packed_kernel"] = packed_kernel(torch.bfloat16)
        a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
        for _ in range(3):
            a @ b
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(20):
            a @ b
        end.record()
        torch.cuda.synchronize()
        out["bf16_matmul_tflops"] = round(20 * 2 * 8192**3 / (start.elapsed_time(end) / 1e3) / 1e12, 1)
    out["ok"] = True
    return out


# ---------------------------------------------------------------------------------------------
# kernels: packed rows on the varlen kernel against padded SDPA; Liger against the plain path
# ---------------------------------------------------------------------------------------------

def _rows(n: int, lo: int, hi: int, vocab: int, seed: int) -> list[dict]:
    import torch
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        length = int(torch.randint(lo, hi, (1,), generator=g))
        ids = torch.randint(10, vocab, (length,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * (length // 3) + ids[length // 3:]})
    return out


def _loss_and_grads(model, batch: dict, loss_fn) -> tuple[float, "torch.Tensor"]:
    import torch
    model.zero_grad(set_to_none=True)
    b = {k: (v.to(model.device) if hasattr(v, "to") else v) for k, v in batch.items()}
    labels = b.pop("labels")
    loss = loss_fn(model(**b), labels)
    loss.backward()
    grads = torch.cat([p.grad.float().flatten() for p in model.parameters() if p.grad is not None])
    return loss.item(), grads


def _rel(a, b) -> float:
    return float(f"{float((a - b).norm() / b.norm().clamp_min(1e-12)):.3g}")


def kernels(plan: dict) -> dict:
    """Loss and gradient of packed rows on the variable-length path against the padded SDPA batch, next to
    the bf16 noise floor (the padded batch in bf16 against fp32); then Liger + the fused head against it."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from engine import config as C
    from engine.modeling import liger, varlen
    from engine.train import collate as batching
    from engine.train.loss import FusedHeadLoss, trained_positions_loss
    cuda = torch.cuda.is_available()
    shape = dict(SHAPES["tiny"], vocab_size=32000) if plan["dry"] else dict(
        hidden_size=1024, intermediate_size=2816, num_hidden_layers=4, num_attention_heads=16,
        num_key_value_heads=4, vocab_size=32000)
    torch.manual_seed(0)
    device = "cuda" if cuda else "cpu"
    with torch.device(device):
        ref32 = LlamaForCausalLM(LlamaConfig(**shape, max_position_embeddings=4096)).float()
    half = torch.bfloat16 if cuda else torch.float32
    batch = _rows(8 if cuda else 4, 20, 600 if cuda else 60, 32000, seed=1)
    padded = batching.padded(0, True)(batch)
    packed = batching.packed(True)(batch)
    out = {"rows": len(batch), "tokens": int(packed["input_ids"].numel()), "dtype": str(half)}
    l32, g32 = _loss_and_grads(ref32, padded, trained_positions_loss)
    model = LlamaForCausalLM(ref32.config).to(device=device, dtype=half)
    model.load_state_dict(ref32.state_dict())
    model.set_attn_implementation("sdpa")
    lpad, gpad = _loss_and_grads(model, padded, trained_positions_loss)
    name = varlen.register(kernel=None if cuda else varlen.reference_kernel)  # CPU: the reference kernel
    model.set_attn_implementation(name)
    lvar, gvar = _loss_and_grads(model, packed, trained_positions_loss)
    out["varlen_calls"] = dict(varlen.CALLS)  # every layer on the kernel, none on the SDPA fallback
    noise = max(_rel(gpad, g32), 1e-6)
    out.update(loss_fp32=round(l32, 5), loss_padded=round(lpad, 5), loss_packed_varlen=round(lvar, 5),
               grad_rel_err_padded_vs_fp32=noise, grad_rel_err_varlen_vs_padded=_rel(gvar, gpad),
               kernel="torch varlen_attn" if cuda else "reference (CPU)")
    tol_loss = 2e-2 if cuda else 1e-5
    grad_tol = max(3 * noise, 2e-2) if cuda else 1e-4
    out["varlen_ok"] = (varlen.CALLS["sdpa"] == 0 and abs(lvar - lpad) <= tol_loss * abs(lpad)
                        and _rel(gvar, gpad) <= grad_tol)
    if cuda and "enable_gqa" not in varlen._torch_varlen()[1]:
        out["native_gqa_matches_repeat"] = _native_gqa_check()
    out["liger_ok"] = None
    cfg = C.RunConfig()
    if liger.available():
        kernels_ = liger.apply(model, cfg)
        head = liger.fuse_head(model, cfg)
        lfused, gfused = _loss_and_grads(model, packed, FusedHeadLoss(head) if head is not None else
                                         trained_positions_loss)
        out.update(liger=" ".join(kernels_ + ["fused_linear_cross_entropy"] * (head is not None)),
                   loss_liger=round(lfused, 5), grad_rel_err_liger_vs_plain=_rel(gfused, gvar))
        out["liger_ok"] = abs(lfused - lvar) <= 2e-2 * abs(lvar) and _rel(gfused, gvar) <= max(3 * noise, 2e-2)
    else:
        out["liger"] = "not available (needs CUDA and liger-kernel)"
    out["ok"] = bool(out["varlen_ok"]) and out["liger_ok"] is not False
    return out


def _native_gqa_check() -> float:
    """This torch's varlen_attn has no enable_gqa flag, so the kernel call repeats key / value heads. Does the
    flash kernel take fewer key heads as they are? (max abs difference; 0 means the repeat can go)."""
    import torch

    from engine.modeling import varlen
    fn = varlen._torch_varlen()[0]
    q = torch.randn(300, 16, 64, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(300, 4, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    cu = torch.tensor([0, 100, 300], device="cuda", dtype=torch.int32)
    try:
        native = fn(q, k, v, cu, cu, 200, 200, window_size=(-1, 0))
    except Exception as e:  # noqa: BLE001 - a refusal is the answer
        return f"refused: {type(e).__name__}"
    return float((native - varlen.torch_kernel(q, k, v, cu, 200, None)).abs().max())


# ---------------------------------------------------------------------------------------------
# models: random-initialised shapes as safetensors folders with the default model's tokenizer
# ---------------------------------------------------------------------------------------------

def models(plan: dict) -> dict:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    work, tok = Path(plan["work"]), tokenizer_dir()
    out = {}
    for size in plan["sizes"]:
        target = work / "models" / size
        if (target / "config.json").is_file():
            out[size] = str(target)
            continue
        t0 = time.time()
        tmp = target.with_name(f".tmp-{size}")
        shutil.rmtree(tmp, ignore_errors=True)
        cfg = LlamaConfig(**SHAPES[size], max_position_embeddings=8192, bos_token_id=1, eos_token_id=2,
                          pad_token_id=2, tie_word_embeddings=False)
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = LlamaForCausalLM(cfg).to(torch.bfloat16 if torch.cuda.is_available() else torch.float32)
        model.save_pretrained(tmp)
        del model
        for f in tok.iterdir():
            if f.name.startswith(("tokenizer", "chat_template", "special_tokens")):
                shutil.copy2(f, tmp / f.name)
        tmp.rename(target)
        out[size] = str(target)
        out[f"{size}_s"] = round(time.time() - t0, 1)
    if plan.get("stand_in"):
        out["stand_in"] = str(_stand_in(work))
    out["ok"] = True
    return out


def _stand_in(work: Path) -> Path:
    """The embedded default model's folder for the pytest parts (WHETSTONE_CACHE=<work>/cache): its real
    config and tokenizer with random weights (the GGUF package it is converted from does not travel)."""
    import torch
    from transformers import AutoConfig, LlamaForCausalLM
    target = work / "cache" / "models" / "smollm2-135m-instruct"
    if (target / "model.safetensors").is_file():
        return target
    tok = tokenizer_dir()
    tmp = target.with_name(".tmp-stand-in")
    shutil.rmtree(tmp, ignore_errors=True)
    LlamaForCausalLM(AutoConfig.from_pretrained(tok)).to(torch.float32).save_pretrained(tmp)
    for f in tok.iterdir():
        if f.name.startswith(("tokenizer", "chat_template", "special_tokens", "generation_config")):
            shutil.copy2(f, tmp / f.name)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(target)
    return target
