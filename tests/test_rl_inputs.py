"""What grpo / ppo read before training, without a model: prompts and reference answers from every
conversation format (bad rows named), the settings checked together, each built-in reward scoring what it
says, and a user's reward file refused with the file and the problem named whatever is wrong with it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import config as C
from engine.data import checks, prompts
from engine.data.files import DataError


def rl_config(tmp_path: Path, rows: list[dict] | None = None, **rl) -> C.RunConfig:
    data = {"datasets": ["arithmetic"]}
    if rows is not None:
        path = tmp_path / "rows.json"
        path.write_text(json.dumps(rows))
        data = {"datasets": [str(path)]}
    return C.from_dict({"data": data, "method": {"stage": "grpo", "rl": {"weight_exact_match": 1.0, **rl}},
                        "output": {"saves_dir": str(tmp_path)}}, check_files=False)


def test_prompts_and_references_come_from_every_conversation_format(tmp_path):
    alpaca = rl_config(tmp_path)
    train, val, report = prompts.build(alpaca)
    assert report.train == 200 and val == []
    assert train[0]["prompt"] == [{"role": "user", "content": "What is 17 + 8?"}]
    assert train[0]["answer"] == "25"
    messages = [{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                              {"role": "assistant", "content": "4"}], "level": 1}]
    train, _, _ = prompts.build(rl_config(tmp_path, messages))
    assert train[0]["prompt"][-1] == {"role": "user", "content": "2+2?"} and train[0]["prompt"][0]["role"] == "system"
    assert train[0]["answer"] == "4" and train[0]["level"] == 1  # other fields reach a Python reward's **columns
    pairs = [{"prompt": "Capital of France?", "chosen": "Paris", "rejected": "Rome", "answer": "Paris."}]
    train, _, _ = prompts.build(rl_config(tmp_path, pairs))
    assert train[0]["answer"] == "Paris."  # the answer column wins over the chosen reply


def test_rows_that_give_no_prompt_are_named_before_launch(tmp_path):
    path = tmp_path / "turns.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in [
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "4"}]},
        {"messages": [{"role": "assistant", "content": "I speak first"}]}]))
    cfg = C.from_dict({"data": {"datasets": [str(path)]},
                       "method": {"stage": "grpo", "rl": {"weight_contains_answer": 1.0}}}, check_files=False)
    problems = checks.before_launch(cfg)  # the launcher refuses before a run folder is made
    assert len(problems) == 1 and f"{path}, row 2" in problems[0] and "no user turn" in problems[0]
    with pytest.raises(DataError, match="row 2"):
        prompts.build(cfg)
    train, _, report = prompts.build(C.replace(cfg, "data.on_bad_rows", "drop"))
    assert len(train) == 1 and report.dropped_bad == 1
    text = tmp_path / "plain.jsonl"
    text.write_text(json.dumps({"text": "just prose"}) + "\n")
    cfg = C.replace(cfg, "data.datasets", [str(text)])
    problems = checks.before_launch(cfg)
    assert problems and "has no prompts" in problems[0]
    with pytest.raises(DataError, match="has no prompts"):
        prompts.build(cfg)


def test_the_settings_are_checked_together(tmp_path):
    def problems(**kw) -> str:
        data = {"method": {"stage": kw.pop("stage", "grpo"), "finetuning": kw.pop("finetuning", "lora"),
                           "rl": kw.pop("rl", {"weight_length": 1.0})}, "train": kw.pop("train", {}),
                "output": {"saves_dir": str(tmp_path)}}
        with pytest.raises(C.ConfigError) as e:
            C.from_dict(data, check_files=True)
        return str(e.value)
    assert "needs at least one reward" in problems(rl={})
    assert "method.rl.beta" in problems(stage="ppo", rl={"weight_length": 1.0, "beta": 0.0})
    assert "must be a whole number of prompts x method.rl.generations (3)" in problems(
        rl={"weight_length": 1.0, "generations": 3}, train={"batch_size": 4})
    assert "method.rl.format_regex" in problems(rl={"weight_format": 1.0, "format_regex": "Answer: ("})
    assert "method.finetuning: prefix is not supported for grpo" in problems(finetuning="prefix")
    assert "method.rl.reward_file: no file at" in problems(rl={"weight_python": 1.0,
                                                                "reward_file": str(tmp_path / "nope.py")})
    assert "method.rl.reward_model_run: no run folder at 'missing'" in problems(
        stage="ppo", rl={"weight_reward_model": 1.0, "reward_model_run": "missing"})
    assert "method.rl.policy_run: no run folder" in problems(rl={"weight_length": 1.0, "policy_run": "gone"})
    ok = C.from_dict({"method": {"stage": "ppo", "rl": {"weight_length": 1.0}}}, check_files=False)
    assert ok.method.stage == "ppo"  # ppo is a stage that runs now, with a KL penalty by default


def test_builtin_rewards_score_what_they_say():
    from engine.train import rewards as R
    ans = ["42", "Paris", "7"]
    done = ["6 x 7 = 42", "The capital is Paris.\nAnswer: paris", "Answer: 17"]
    assert R.exact_match([], done, ans) == [0.0, 1.0, 0.0]  # the final answer, not any number in the text
    assert R.exact_match([], ["blah\n42."], ["42"]) == [1.0]
    assert R.contains_answer([], done, ans) == [1.0, 1.0, 0.0]  # 17 does not contain the number 7
    assert R.contains_answer([], ["it is 1,000"], ["1000"]) == [1.0]
    fmt = R.format_reward(C.RunConfig().method.rl.format_regex)
    assert fmt([], ["work\nAnswer: 12", "Answer: 12 apples", "answer is 12"]) == [1.0, 0.0, 0.0]
    length = R.length_reward(4)
    assert length([], ["a", "b", "c"], completion_ids=[[1] * 4, [1] * 2, [1] * 9]) == [1.0, 0.5, 0.0]
    conv = [[{"role": "assistant", "content": "Answer: 7"}]]  # trl passes conversations as message lists
    assert R.exact_match([], conv, ["7"]) == [1.0]


@pytest.mark.parametrize("source, said", [
    ("def reward(prompts, completions:\n", "failed to import: SyntaxError"),
    ("import no_such_module_here\n", "failed to import: ModuleNotFoundError"),
    ("def score(prompts, completions, **k):\n    return [0.0] * len(completions)\n", "defines no function `reward`"),
    ("reward = 3\n", "`reward` is a int, not a function"),
])
def test_a_reward_file_that_cannot_load_is_named(tmp_path, source, said):
    from engine.train.rewards import RewardError, load_python_reward
    f = tmp_path / "r.py"
    f.write_text(source)
    with pytest.raises(RewardError) as e:
        load_python_reward(str(f))
    assert str(f.resolve()) in str(e.value) and said in str(e.value)


@pytest.mark.parametrize("body, said", [
    ("return [1 / 0 for c in completions]", "raised ZeroDivisionError: division by zero"),
    ("return [1.0]", "returned 1 values for 2 completions"),
    ("return ['high', 'low']", "returned str 'high' at position 0; every value must be a number"),
    ("return [float('nan'), 1.0]", "returned nan at position 0; every value must be a finite number"),
    ("return 1.0", "returned float, not a list of 2 numbers"),
    ("return [None, 1.0]", "returned NoneType 'None' at position 0"),
])
def test_a_reward_that_misbehaves_is_named_at_its_first_call(tmp_path, body, said):
    from engine.train.rewards import RewardError, load_python_reward
    f = tmp_path / "r.py"
    f.write_text(f"def reward(prompts, completions, **columns):\n    {body}\n")
    fn = load_python_reward(str(f))
    with pytest.raises(RewardError) as e:
        fn(prompts=["a", "b"], completions=["x", "y"], answer=["1", "2"], trainer_state=None, log_metric=None)
    assert f"reward() in {f.resolve()}" in str(e.value) and said in str(e.value)


def test_a_reward_file_gets_text_and_the_rows_columns(tmp_path):
    from engine.train.rewards import load_python_reward
    f = tmp_path / "r.py"
    f.write_text("def reward(prompts, completions, answer, level, **columns):\n"
                 "    assert not columns, columns\n"
                 "    return [float(c == a) + l for c, a, l in zip(completions, answer, level)]\n")
    fn = load_python_reward(str(f))
    got = fn(prompts=[[{"role": "user", "content": "q"}]] * 2,
             completions=[[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": "5"}]],
             answer=["4", "4"], level=[1, 2], completion_ids=[[1], [2]], trainer_state=None, log_extra=None,
             log_metric=None)
    assert got == [2.0, 2.0]


def test_the_ui_and_cli_warn_before_a_reward_file_runs(tmp_path):
    from engine.config import rl
    f = tmp_path / "r.py"
    f.write_text("def reward(prompts, completions, **c):\n    return [0.0] * len(completions)\n")
    cfg = C.from_dict({"method": {"stage": "grpo", "rl": {"weight_python": 1.0, "reward_file": str(f)}}},
                      check_files=False)
    (w,) = rl.warnings(cfg)
    assert str(f) in w and "with your user's rights" in w
    assert rl.warnings(C.replace(cfg, "method.stage", "sft")) == []


def test_the_rlhf_presets_chain_each_step_to_the_one_before():
    from webui import presets
    sft, rm, ppo = (presets.load(n) for n in ("rlhf_1_sft", "rlhf_2_rm", "rlhf_3_ppo"))
    assert (sft.method.stage, rm.method.stage, ppo.method.stage) == ("sft", "rm", "ppo")
    assert ppo.method.rl.policy_run == sft.output.run_name and ppo.method.rl.reward_model_run == rm.output.run_name
    assert sft.model.name_or_path == rm.model.name_or_path == ppo.model.name_or_path
    assert ppo.method.rl.beta > 0 and ppo.method.rl.weight_reward_model > 0
    grpo = presets.load("grpo")
    assert grpo.method.stage == "grpo" and grpo.data.datasets == ["arithmetic"]
