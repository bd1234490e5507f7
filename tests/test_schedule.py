"""A preset that states its intent ("about N optimizer steps") trains a 40-row and a 300-row set for the
steps each needs; an explicit epochs or max_steps always wins, even when it equals the old default."""
import json

import pytest

from engine import config as C
from engine.preflight import schedule as S
from tests.conftest import REPO


def train(**kw) -> C.TrainConfig:
    return C.from_dict({"train": kw}, check_files=False).train


@pytest.mark.parametrize("rows, spe, epochs, total", [
    (30, 8, 6.0, 48),     # a small set: many passes
    (40, 10, 5.0, 50),
    (92, 23, 2.0, 46),
    (100, 25, 2.0, 50),
    (250, 63, 1.0, 63),   # one pass is already more than the target: at least min_epochs
    (300, 75, 1.0, 75),
])
def test_target_steps_resolve_whole_epochs_from_the_row_count(rows, spe, epochs, total):
    s = S.resolve(train(target_steps=48, batch_size=4, warmup_ratio=0.05), rows)
    assert (s.steps_per_epoch, s.epochs, s.total_steps, s.rule) == (spe, epochs, total, "target_steps")
    assert s.warmup_steps == -(-total * 5 // 100)  # ceil(5% of the steps), as the Trainer counts it
    assert abs(s.total_steps - 48) <= spe // 2 + 1 or s.epochs == 1.0


def test_min_epochs_holds_for_large_sets_and_partial_epochs_are_allowed_below_it():
    assert S.resolve(train(target_steps=48, batch_size=4, min_epochs=2), 300).total_steps == 150
    half = S.resolve(train(target_steps=48, batch_size=4, min_epochs=0.5), 1000)
    assert (half.epochs, half.total_steps) == (0.5, 125)


@pytest.mark.parametrize("explicit", [{"epochs": 3}, {"epochs": 3.0}, {"max_steps": 20}, {"epochs": 1, "max_steps": 7}])
def test_an_explicit_epochs_or_max_steps_wins_even_when_it_equals_the_default(explicit):
    s = S.resolve(train(target_steps=48, batch_size=4, **explicit), 40)
    if "max_steps" in explicit:
        assert (s.rule, s.total_steps) == ("max_steps", explicit["max_steps"])
    else:
        assert (s.rule, s.epochs, s.total_steps) == ("epochs", 3.0, 30)


def test_no_intent_at_all_keeps_three_epochs():
    s = S.resolve(train(batch_size=8), 92)
    assert (s.rule, s.epochs, s.total_steps) == ("default", 3.0, 36)


def test_steps_per_epoch_count_gradient_accumulation_and_processes_as_the_trainer_does():
    assert S.steps_per_epoch(92, 4, 1) == 23
    assert S.steps_per_epoch(92, 4, 2) == 12     # 23 batches, the last step takes one
    assert S.steps_per_epoch(92, 4, 1, world=2) == 12


def test_general_rows_ride_along_without_cutting_the_epochs_of_your_rows():
    alone = S.resolve(train(target_steps=48, batch_size=4), 92)
    mixed = S.resolve(train(target_steps=48, batch_size=4), 92 + 46, general_rows=46)
    assert mixed.epochs == alone.epochs == 2.0
    assert mixed.total_steps == 2 * 35 and "92 + 46 general rows" in mixed.describe()


def test_plan_counts_the_rows_a_config_names_and_says_so(tmp_path):
    rows = [{"instruction": f"q{i}", "input": "", "output": f"a{i}"} for i in range(40)]
    rows[3]["output"] = ""  # an unusable row is not counted
    f = tmp_path / "mine.json"
    f.write_text(json.dumps(rows))
    cfg = C.load(REPO / "presets" / "quickstart.yaml", [f"data.datasets=[{f}]"])
    plan = S.plan(cfg)
    general = plan.general_rows
    assert plan.rows - general == 39 and plan.rule == "target_steps"
    assert plan.total_steps == plan.epochs * plan.steps_per_epoch
    assert f"{plan.total_steps} optimizer steps" in plan.describe()
    explicit = S.plan(C.replace(cfg, "train.epochs", 1.0))
    assert (explicit.rule, explicit.epochs, explicit.total_steps) == ("epochs", 1.0, explicit.steps_per_epoch)


def test_plan_of_a_hub_dataset_waits_for_the_run_to_count_it():
    cfg = C.replace(C.RunConfig(), "data.datasets", ["someorg/some-dataset"])
    cfg = C.replace(cfg, "train.target_steps", 48)
    plan = S.plan(cfg)
    assert plan.rows is None and "hub" in plan.describe()
