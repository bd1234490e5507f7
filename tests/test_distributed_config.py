"""The distributed section: combinations that cannot work are refused before anything starts, each
naming its field; the chosen strategy reaches the Trainer as DDP / FSDP / DeepSpeed settings."""
import pytest

from engine import config as C
from engine.runs import torchrun as distributed
from engine.train import ranks


def cfg_with(check_files=False, **sections):
    data = {"model": {"name_or_path": "some/model"}, **sections}
    return C.from_dict(data, check_files=check_files)


def problems_of(**sections):
    with pytest.raises(C.ConfigError) as e:
        cfg_with(**sections)
    return e.value.problems


def test_defaults_are_one_plain_process():
    cfg = cfg_with()
    assert (cfg.distributed.nproc_per_node, cfg.distributed.nnodes, cfg.distributed.strategy) == (1, 1, "none")
    assert not distributed.needs_launcher(cfg) and ranks.trainer_kwargs(cfg, cuda=False) == {}
    assert C.from_yaml(C.to_yaml(cfg), check_files=False) == cfg


def test_impossible_combinations_are_all_named_at_once():
    p = problems_of(method={"finetuning": "qlora"},
                    distributed={"nproc_per_node": 2, "nnodes": 2, "node_rank": 2, "strategy": "fsdp",
                                 "backend": "mpi"})
    assert any(s.startswith("distributed.backend:") for s in p)
    assert any(s.startswith("distributed.node_rank:") for s in p)
    assert any(s.startswith("distributed.strategy:") and "qlora" in s for s in p)
    p = problems_of(distributed={"nproc_per_node": 4})
    assert p[0].startswith("distributed.strategy:") and "ddp" in p[0]
    p = problems_of(distributed={"strategy": "ddp", "cpu_offload": True})
    assert p[0].startswith("distributed.cpu_offload:")
    p = problems_of(model={"name_or_path": "m", "quantization": "8bit"}, distributed={"strategy": "deepspeed_zero3"})
    assert p[0].startswith("distributed.strategy:")
    p = problems_of(distributed={"nproc_per_node": 0, "master_port": 80})
    assert {s.split(":")[0] for s in p} == {"distributed.nproc_per_node", "distributed.master_port"}
    # These do work: qlora with ddp or ZeRO-2; FSDP / ZeRO-3 with plain LoRA and offload.
    cfg_with(method={"finetuning": "qlora"}, distributed={"nproc_per_node": 2, "strategy": "ddp"})
    cfg_with(method={"finetuning": "qlora"}, distributed={"strategy": "deepspeed_zero2"})
    cfg_with(distributed={"strategy": "deepspeed_zero3", "cpu_offload": True, "nproc_per_node": 8})


def test_the_machine_is_checked_before_a_run_starts():
    ddp4 = cfg_with(distributed={"nproc_per_node": 4, "strategy": "ddp"})
    assert distributed.launch_problems(ddp4, gpus=0) == []  # CPU: four gloo replicas is allowed
    p = distributed.launch_problems(ddp4, gpus=2)
    assert len(p) == 1 and p[0].startswith("distributed.nproc_per_node:") and "2 GPU" in p[0]
    fsdp = cfg_with(distributed={"strategy": "fsdp"})
    assert "needs CUDA GPUs" in distributed.launch_problems(fsdp, gpus=0)[0]
    assert distributed.launch_problems(fsdp, gpus=1) == []
    nccl_cpu = cfg_with(distributed={"nproc_per_node": 2, "strategy": "ddp", "backend": "nccl"})
    assert distributed.launch_problems(nccl_cpu, gpus=0)[0].startswith("distributed.backend:")
    two_nodes = cfg_with(distributed={"nnodes": 2, "nproc_per_node": 1, "strategy": "ddp"})
    assert any("master_addr" in s for s in distributed.launch_problems(two_nodes, gpus=1))


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,3")
    assert distributed.visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert distributed.visible_gpus() == 0


def test_launcher_refuses_a_run_this_machine_cannot_start(tmp_path, monkeypatch):
    from engine.runs import launcher
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    cfg = cfg_with(distributed={"strategy": "fsdp"}, output={"run_name": "x", "saves_dir": str(tmp_path)})
    monkeypatch.setattr(C, "from_dict", lambda d, **k: cfg)  # the model name need not exist for this check
    with pytest.raises(C.ConfigError, match="needs CUDA GPUs"):
        launcher.start(cfg)
    assert not (tmp_path / "x").exists(), "no half-made run folder"


def test_strategies_become_trainer_arguments():
    ddp = ranks.trainer_kwargs(cfg_with(distributed={"nproc_per_node": 2, "strategy": "ddp"}), cuda=False)
    assert ddp == {"ddp_backend": "gloo", "ddp_find_unused_parameters": False}
    assert ranks.trainer_kwargs(cfg_with(distributed={"nproc_per_node": 2, "strategy": "ddp"}),
                                      cuda=True)["ddp_backend"] == "nccl"
    fsdp = ranks.trainer_kwargs(cfg_with(distributed={"strategy": "fsdp", "cpu_offload": True}), cuda=True)
    assert fsdp["fsdp"] is True
    assert fsdp["fsdp_config"]["version"] == 2 and fsdp["fsdp_config"]["cpu_offload"] is True
    assert fsdp["fsdp_config"]["state_dict_type"] == "FULL_STATE_DICT"  # a standard output folder at the end
    z2 = ranks.trainer_kwargs(cfg_with(distributed={"strategy": "deepspeed_zero2"}), cuda=True)["deepspeed"]
    assert z2["zero_optimization"]["stage"] == 2 and "offload_optimizer" not in z2["zero_optimization"]
    assert z2["train_micro_batch_size_per_gpu"] == "auto"  # the Trainer fills it from train.batch_size
    z3 = ranks.deepspeed_config(cfg_with(distributed={"strategy": "deepspeed_zero3", "cpu_offload": True}))
    zo = z3["zero_optimization"]
    assert zo["stage"] == 3 and zo["offload_param"]["device"] == "cpu" and zo["offload_optimizer"]["device"] == "cpu"
    assert zo["stage3_gather_16bit_weights_on_model_save"] is True


def test_other_ranks_write_only_their_own_failure(tmp_path):
    from engine.runs.events import read_all
    ev = ranks.RankEvents(tmp_path / "events.jsonl", 1)
    ev.status("running", 3)
    ev.write("train", 3, loss=1.0)
    assert not (tmp_path / "events.jsonl").exists()
    ev.error("CUDA error on rank 1", 4)
    ev.status("failed", 4, reason="CUDA error on rank 1")
    ev.close()
    got = read_all(tmp_path / "events.jsonl")
    assert [(e["kind"], e["rank"]) for e in got] == [("error", 1), ("status", 1)]


def test_a_rank_that_died_is_explained_in_plain_words():
    from engine.runs.failures import explain
    msg = explain(RuntimeError("[gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:8840: Connection reset by "
                               "peer. This is typically caused by a remote worker hanging"))
    assert msg.startswith("Another training process of this run stopped unexpectedly")
    assert "stdout.log" in msg and "Resume" in msg
