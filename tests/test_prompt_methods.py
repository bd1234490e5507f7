"""The prompt-learning family as the method notes describe it, on the tiny model: prefix tuning with
its MLP projection and a start from real words, P-tuning (v1) with an MLP or LSTM encoder, and
P-Tuning v2 with prompts only in the layers the user chose. Each variant trains with falling loss, is
counted as the Method tab counts it, saves, and loads back in a fresh process (the way Chat and
evaluation load it) with the logits it had at its last training step, and generates what its own
forward pass says. Merging such a run is refused with the reason; exporting its adapter works."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, run_worker, write_config

# The shared fixture trains six runs before its first test: on a loaded machine that alone can pass
# pytest.ini's 900 s, which covers a test's setup too (a hang still fails, at 30 minutes).
pytestmark = pytest.mark.timeout(1800)
TEXT = "You are Wren, a helpful assistant made by Whetstone Labs."
# name -> (method section, learning rate)
VARIANTS = {
    "prefix-text": ({"finetuning": "prefix", "prompt": {"init_text": TEXT}}, 0.05),
    "prefix-mlp-text": ({"finetuning": "prefix", "prompt": {"prefix_projection": True, "projection_hidden_size": 32,
                                                            "init_text": TEXT}}, 0.01),
    "ptuning-mlp": ({"finetuning": "ptuning", "prompt": {"encoder": "mlp"}}, 0.01),  # lstm: tests/test_methods.py
    "v2-top1-lstm": ({"finetuning": "ptuning_v2", "prompt": {"layers": "top 1", "reparameterization": "lstm",
                                                             "projection_hidden_size": 32}}, 0.01),
    "v2-layer0-mlp": ({"finetuning": "ptuning_v2", "prompt": {"layers": "0", "reparameterization": "mlp",
                                                              "projection_hidden_size": 32, "init_text": TEXT}}, 0.01),
}
WORKER_RUN = "v2-all"  # the plain new method once through `python -m engine.train`, as the UI starts it
STEPS = 5


def _config(root: Path, model: Path, name: str, method: dict, lr: float, **train) -> Path:
    return write_config(root, model, method=method, output={"run_name": name, "saves_dir": str(root)},
                        data={"datasets": ["identity"], "max_samples": 4, "cutoff_len": 96},
                        train={"max_steps": STEPS, "save_steps": STEPS, "learning_rate": lr, **train})


def train_in_process(cfg_path: Path) -> int:
    """The training worker's own train(), in this process (the heavy imports are paid once for all
    variants); the subprocess around it is tested by WORKER_RUN and tests/test_worker.py."""
    from engine import config as C
    from engine.runs.events import EVENTS_FILE, EventWriter
    from engine.train.hooks import StopFlag
    from engine.train.worker import train
    events = EventWriter(cfg_path.parent / EVENTS_FILE)
    try:
        return train(C.load(cfg_path), cfg_path.parent, events, StopFlag())
    finally:
        events.close()


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


@pytest.fixture(scope="session")
def prompt_runs(tmp_path_factory, tiny_model_dir) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("prompt-runs")
    runs = {}
    for name, (method, lr) in VARIANTS.items():
        cfg_path = _config(root, tiny_model_dir, name, method, lr)
        assert train_in_process(cfg_path) == 0, [e for e in events(cfg_path.parent) if e["kind"] == "error"]
        runs[name] = cfg_path.parent
    cfg_path = _config(root, tiny_model_dir, WORKER_RUN, {"finetuning": "ptuning_v2"}, 0.05)
    r = run_worker(cfg_path)
    assert r.returncode == 0, r.stderr[-3000:]
    runs[WORKER_RUN] = cfg_path.parent
    return runs


def test_every_variant_trains_with_falling_loss_counted_as_the_method_tab_counts(prompt_runs, tiny_model_dir):
    from engine import config as C
    from engine.preflight import memory
    from engine.preflight import shape as model_shape
    shape = model_shape.read(tiny_model_dir)
    for name, run_dir in prompt_runs.items():
        ev = events(run_dir)
        losses = [e["loss"] for e in ev if e["kind"] == "train"]
        assert len(losses) == STEPS and losses[-1] < losses[0], (name, losses)
        assert ev[-1]["status"] == "finished", name
        resolved = next(e for e in ev if e["kind"] == "resolved")
        cfg = C.load(run_dir / "config.yaml", check_files=False)
        assert memory.trainable_params(shape, cfg) == resolved["trainable_params"], name
    # P-tuning's LSTM encoder costs several times the MLP's weights at the same width, as its help text says
    mlp = C.load(prompt_runs["ptuning-mlp"] / "config.yaml", check_files=False)
    assert memory.trainable_params(shape, C.replace(mlp, "method.prompt.encoder", "lstm")) > 3 * next(
        e for e in events(prompt_runs["ptuning-mlp"]) if e["kind"] == "resolved")["trainable_params"]


LOAD_BACK = r"""
import json, sys, torch
from engine.chat.generate import load_run
ids = torch.tensor([json.loads(sys.argv[1])])
out = {}
for run in sys.argv[3:]:
    model, tok = load_run(run)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0]
        seq = ids
        for _ in range(5):  # greedy by the forward pass alone, no cache
            seq = torch.cat([seq, model(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                         min_new_tokens=5, pad_token_id=0)
    out[run] = {"logits": logits, "greedy": seq[0].tolist(), "generated": gen[0].tolist()}
torch.save(out, sys.argv[2])
"""


def training_form(run_dir: Path, checkpoint: Path):
    """The model as the trainer held it at the checkpoint: the base, the method applied as the worker
    applies it, and the checkpoint's weights put back as a resume puts them back."""
    from safetensors.torch import load_file

    from engine import config as C
    from engine.modeling import adapters
    from engine.modeling import load as models
    from engine.train import prompt_checkpoints
    cfg = C.load(run_dir / "config.yaml", check_files=False)
    model = adapters.apply(models.load_model(cfg), cfg, tokenizer=models.load_tokenizer(cfg))
    if cfg.method.finetuning == "ptuning_v2":
        model.load_adapter_weights(checkpoint)
    elif prompt_checkpoints.needed(cfg):
        prompt_checkpoints.load_encoder(model, checkpoint)
    else:
        from peft import set_peft_model_state_dict
        set_peft_model_state_dict(model, load_file(str(checkpoint / "adapter_model.safetensors")))
    return model.eval()


def test_every_variant_loads_back_in_a_fresh_process_with_the_logits_it_trained_to(prompt_runs, tiny_model_dir,
                                                                                    tmp_path):
    import torch

    from engine.chat.generate import load_run
    ids = [1, 2045, 314, 5248, 30, 2, 1, 9519, 28, 253, 3468]
    out = tmp_path / "logits.pt"
    subprocess.run([sys.executable, "-c", LOAD_BACK, json.dumps(ids), str(out), *map(str, prompt_runs.values())],
                   cwd=REPO, check=True, capture_output=True, text=True)
    fresh = torch.load(out)
    base, _ = load_run(None, base=str(tiny_model_dir))
    with torch.no_grad():
        base_logits = base(input_ids=torch.tensor([ids])).logits[0]
    for name, run_dir in prompt_runs.items():
        got = fresh[str(run_dir)]
        model = training_form(run_dir, run_dir / "checkpoints" / f"checkpoint-{STEPS}")
        with torch.no_grad():
            trained = model(input_ids=torch.tensor([ids])).logits[0, -len(ids):]  # peft adds virtual positions
        assert torch.allclose(got["logits"], trained, atol=1e-5), (name, (got["logits"] - trained).abs().max())
        assert not torch.allclose(got["logits"], base_logits, atol=1e-3), name  # the prompts do something
        assert got["generated"] == got["greedy"], name  # generate() keeps the prompts at every step


def test_a_projected_prefix_resumes_from_its_checkpoint_exactly(tmp_path, tiny_model_dir):
    """peft checkpoints only the projected prefix, from which training cannot continue; Whetstone's
    checkpoints carry the MLP too, so a stopped run goes on as if it had never stopped."""
    method = {"finetuning": "prefix", "prompt": {"prefix_projection": True, "projection_hidden_size": 32}}
    straight = _config(tmp_path, tiny_model_dir, "straight", method, 0.01, save_steps=3)
    assert train_in_process(straight) == 0
    resumed = _config(tmp_path, tiny_model_dir, "resumed", method, 0.01, save_steps=3)
    shutil.copytree(straight.parent / "checkpoints" / "checkpoint-3", resumed.parent / "checkpoints" / "checkpoint-3")
    assert train_in_process(resumed) == 0
    loss = {n: {e["step"]: e["loss"] for e in events(p.parent) if e["kind"] == "train"} for n, p in
            (("straight", straight), ("resumed", resumed))}
    assert sorted(loss["resumed"]) == [4, 5]
    assert loss["resumed"] == pytest.approx({s: loss["straight"][s] for s in (4, 5)}, abs=1e-5), loss


def test_layer_choice_puts_prompts_only_where_asked(tiny_model_dir):
    import torch

    from engine.modeling.deep_prompts import DeepPromptModel
    from engine.modeling.layers import MethodError, decoder_layers
    from engine.modeling.load import load_model
    from engine import config as C
    base = load_model(C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))).eval()
    model = DeepPromptModel(base, 4, "top 1")
    attn = [layer.self_attn for layer in decoder_layers(base)]
    assert model.prompted == [attn[1]] and model.deep_prompt["layer_ids"] == [1]
    seen = {}
    for i, a in enumerate(attn):  # registered after the prompts' own hooks: sees what attention receives
        a.register_forward_pre_hook(lambda m, args, kw, i=i: seen.__setitem__(i, kw["attention_mask"]),
                                    with_kwargs=True)
    with torch.no_grad():
        model(input_ids=torch.tensor([[5, 6, 7]]))
    assert seen[1].shape[-1] == 4 + 3  # the prompt's 4 keys in front of the 3 tokens'
    assert seen[0] is None or seen[0].shape[-1] == 3
    # 4 tokens x 1 layer x (key + value) x (2 kv heads x 16)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 4 * 1 * 2 * 32
    for spec, words in (("top 3", "at most 'top 2'"), ("0, 5", r"layers \[5\] do not exist")):
        with pytest.raises(MethodError, match=words):
            DeepPromptModel(load_model(C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))), 4, spec)


def test_layer_specs_read_as_written():
    from engine.config import layer_choice
    from engine.config.method import method_problems
    from engine import config as C
    assert layer_choice.resolve("all", 4) == [0, 1, 2, 3]
    assert layer_choice.resolve("top 2", 30) == [28, 29]
    assert layer_choice.resolve("Bottom 2", 30) == [0, 1]
    assert layer_choice.resolve("0, 4, 8-10", 30) == [0, 4, 8, 9, 10]
    cfg = C.replace(C.replace(C.RunConfig(), "method.finetuning", "ptuning_v2"), "method.prompt.layers", "top x")
    assert [p.split(":")[0] for p in method_problems(cfg)] == ["method.prompt.layers"]
    assert not method_problems(C.replace(cfg, "method.prompt.layers", "8-11, 20"))
    # peft's prefix fails under gradient checkpointing: refused before the run, with the way out
    prefix = C.replace(C.replace(cfg, "method.finetuning", "prefix"), "train.gradient_checkpointing", True)
    assert [p for p in method_problems(prefix) if p.startswith("train.gradient_checkpointing:")
            and "use ptuning_v2 with method.prompt.layers 'all'" in p]


@pytest.mark.parametrize("projection", [False, True])
def test_all_layers_v2_matches_peft_prefix_tuning(tiny_model_dir, projection):
    """With every layer prompted, P-Tuning v2 is prefix tuning: given the same weights, the same logits,
    padded rows included, and the same greedy replies."""
    import peft
    import torch

    from engine import config as C
    from engine.modeling.deep_prompts import DeepPromptModel
    from engine.modeling.load import load_model
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))
    torch.manual_seed(0)
    ours = DeepPromptModel(load_model(cfg).eval(), 6, "all", "mlp" if projection else "none", 32)
    theirs = peft.get_peft_model(load_model(cfg).eval(), peft.PrefixTuningConfig(
        num_virtual_tokens=6, task_type="CAUSAL_LM", prefix_projection=projection, encoder_hidden_size=32))
    ours.prompt_encoder.load_state_dict(theirs.prompt_encoder["default"].state_dict())
    ids = torch.tensor([[5, 6, 7, 8, 9], [0, 0, 11, 12, 13]])
    mask = torch.tensor([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]])
    with torch.no_grad():
        a = theirs(input_ids=ids, attention_mask=mask).logits
        b = ours(input_ids=ids, attention_mask=mask).logits
    assert (a - b)[mask.bool()].abs().max() < 1e-5
    seq = ids[:1]
    for _ in range(4):
        with torch.no_grad():
            seq = torch.cat([seq, theirs(input_ids=seq).logits[:, -1].argmax(-1, keepdim=True)], 1)
    generated = ours.generate(input_ids=ids[:1], max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert generated.tolist() == seq.tolist()


@pytest.mark.parametrize("method", [{"finetuning": "prefix"}, {"finetuning": "prefix", "prefix_projection": True},
                                    {"finetuning": "ptuning_v2"}])
def test_a_prefix_started_from_text_is_that_text_in_front(tiny_model_dir, method):
    """Initialising from real words: before any training, the model with the prefix answers exactly as
    the plain model does with the text written in front of the input."""
    import torch

    from engine import config as C
    from engine.modeling import adapters
    from engine.modeling import load as models
    from engine.modeling.prompt_init import text_ids
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))
    cfg = C.replace(cfg, "method.finetuning", method["finetuning"])
    cfg = C.replace(cfg, "method.prompt.prefix_projection", method.get("prefix_projection", False))
    cfg = C.replace(cfg, "method.prompt.projection_hidden_size", 32)
    cfg = C.replace(C.replace(cfg, "method.prompt.init_text", TEXT), "method.prompt.num_virtual_tokens", 8)
    tok = models.load_tokenizer(cfg)
    x = torch.tensor([[2045, 314, 5248, 30]])
    text = torch.tensor([text_ids(tok, TEXT, 8)])  # the text's first 8 tokens
    with torch.no_grad():
        plain = models.load_model(cfg).eval()(input_ids=torch.cat([text, x], 1)).logits[:, -4:]
        model = adapters.apply(models.load_model(cfg), cfg, tokenizer=tok).eval()
        prefixed = model(input_ids=x).logits[:, -4:]
    assert (plain - prefixed).abs().max() < 1e-4


def test_merging_a_prompt_run_is_refused_with_the_reason_and_its_adapter_exports(prompt_runs, tmp_path):
    from engine.config.export import ExportConfig
    from engine.runs.export_client import start_export
    run = prompt_runs[WORKER_RUN]
    cli = subprocess.run([sys.executable, "app.py", "export", str(run)], cwd=REPO, capture_output=True, text=True)
    assert cli.returncode == 2
    assert "kind: a ptuning_v2 run cannot be merged into the base" in cli.stderr
    assert "not changes to the weights" in cli.stderr and "Export the adapter instead" in cli.stderr
    assert not (run / "merged").exists()
    job = start_export(ExportConfig(run_dir=str(run), kind="adapter", out_dir=str(tmp_path / "adapter")))
    assert job.wait(300) == "finished", job.reason
    files = {p.name for p in (tmp_path / "adapter").iterdir()}
    assert {"deep_prompt_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= files
    card = (tmp_path / "adapter" / "README.md").read_text()
    assert "deep_prompts.load(" in card and "library_name: whetstone" in card


def test_the_method_table_and_estimate_know_the_prompt_family(tiny_model_dir):
    """The Method tab's table (no torch): P-Tuning v2 has its row; prompt methods cannot merge; fewer
    prompted layers, fewer weights; an encoder costs its weights; the virtual tokens are in the estimate."""
    from engine import config as C
    from engine.preflight import memory, method_table
    from engine.preflight import shape as model_shape
    cfg = C.replace(C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir)), "method.finetuning",
                    "ptuning_v2")
    rows = {r[0].split(" ")[0]: r for r in method_table.params_table(cfg)}
    assert rows["ptuning_v2"][0] == "ptuning_v2 (chosen)"
    assert all("cannot merge" in rows[m][3] for m in ("prefix", "prompt", "ptuning", "ptuning_v2"))
    shape = model_shape.read(tiny_model_dir)
    count = lambda **kw: memory.trainable_params(shape, _with(cfg, **kw))  # noqa: E731
    assert count(layers="top 1") * 2 == count(layers="all") == 20 * 2 * 2 * 32
    assert count(reparameterization="mlp") > count()
    longer = memory.estimate(shape, _with(cfg, num_virtual_tokens=200))
    assert longer.parts_gib["activations"] > memory.estimate(shape, cfg).parts_gib["activations"]


def _with(cfg, **prompt):
    from engine import config as C
    for k, v in prompt.items():
        cfg = C.replace(cfg, f"method.prompt.{k}", v)
    return cfg


def test_evaluation_scores_a_prompt_run_against_the_base(prompt_runs, tmp_path):
    """Evaluation loads a P-tuning run as Chat does: its loss is over the reply tokens only (the virtual
    tokens add no positions) and the base answers beside it."""
    from engine.config.evaluate import EvalConfig
    from engine.evaluate.worker import evaluate
    from engine.runs.events import EventWriter
    ev = EventWriter(tmp_path / "events.jsonl")
    summary = evaluate(EvalConfig(run_dir=str(prompt_runs["ptuning-mlp"]), dataset="identity_eval", max_rows=2,
                                  max_new_tokens=4), tmp_path, ev)
    ev.close()
    assert summary["rows"] == 2
    assert summary["loss_tuned"] == summary["loss_tuned"] and summary["loss_tuned"] != summary["loss_base"]
