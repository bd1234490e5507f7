"""Experiment trackers: a run with train.report_to writes, inside its own folder, what TensorBoard, MLflow
and Trackio read back with their own readers: the run's loss at every step, equal to events.jsonl. A tracker
whose package is missing is named by the config check, with the command that installs it, before any run."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest

from engine import config as C
from engine.runs import trackers
from engine.runs.events import read_all
from tests.conftest import REPO, run_worker, write_config

STEPS = 5


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, tiny_model_dir):
    """One tiny run reporting to the three trackers the tests read back."""
    saves = tmp_path_factory.mktemp("tracked")
    cfg = write_config(saves, tiny_model_dir, data={"max_samples": 16},
                       train={"max_steps": STEPS, "report_to": ["tensorboard", "mlflow", "trackio"],
                              "save_steps": 100},
                       output={"run_name": "tracked", "saves_dir": str(saves)})
    out = run_worker(cfg)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = cfg.parent
    losses = {e["step"]: e["loss"] for e in read_all(run_dir / "events.jsonl") if e["kind"] == "train"}
    assert sorted(losses) == list(range(1, STEPS + 1))
    return run_dir, losses


def same(found: dict, expected: dict, rel: float) -> None:
    assert sorted(found) == sorted(expected), (found, expected)
    for step, v in expected.items():
        assert math.isclose(found[step], v, rel_tol=rel), (step, found[step], v)


def test_tensorboard_event_files_hold_every_step_of_the_loss(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    run_dir, losses = tracked_run
    logdir = trackers.folder(run_dir, "tensorboard")
    assert list(logdir.glob("events.out.tfevents.*")), "TensorBoard wrote no event file in the run folder"
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    found = {s.step: s.value for s in acc.Scalars("train/loss")}
    same(found, losses, rel=1e-6)  # TensorBoard stores float32
    assert trackers.open_command(run_dir, "tensorboard") == f"tensorboard --logdir {logdir}"


def test_the_mlflow_file_store_holds_the_run_by_its_name_with_every_loss(tracked_run, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient
    run_dir, losses = tracked_run
    client = MlflowClient(tracking_uri=trackers.folder(run_dir, "mlflow").as_uri())
    exp = client.get_experiment_by_name(trackers.PROJECT)
    assert exp is not None, "no 'whetstone' experiment in the run's MLflow store"
    runs = client.search_runs([exp.experiment_id])
    assert [r.info.run_name for r in runs] == ["tracked"]
    found = {m.step: m.value for m in client.get_metric_history(runs[0].info.run_id, "loss")}
    same(found, losses, rel=1e-12)


def test_trackio_local_data_holds_the_run_with_every_loss(tracked_run, monkeypatch):
    run_dir, losses = tracked_run
    code = ("import json, sys\nfrom trackio.sqlite_storage import SQLiteStorage\n"
            f"print(json.dumps(SQLiteStorage.get_runs({trackers.PROJECT!r})))\n"
            f"print(json.dumps(SQLiteStorage.get_logs({trackers.PROJECT!r}, 'tracked')))\n")
    # TRACKIO_DIR is read when trackio is imported: read it back in a process pointed at the run folder
    env = {"TRACKIO_DIR": str(trackers.folder(run_dir, "trackio"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                         env={**__import__("os").environ, **env})
    assert out.returncode == 0, out.stderr[-3000:]
    import json
    lines = out.stdout.strip().splitlines()
    runs, logs = json.loads(lines[-2]), json.loads(lines[-1])
    assert "tracked" in runs
    found = {row["train/global_step"]: row["train/loss"] for row in logs if "train/loss" in row}
    same(found, losses, rel=1e-12)


def test_a_missing_tracker_package_is_named_with_the_command_that_installs_it(tmp_path):
    """The config check runs in a process where the mlflow package cannot be found."""
    code = ("import importlib.abc, sys\n"
            "class Gone(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'mlflow': raise ModuleNotFoundError(name)\n"
            "sys.meta_path.insert(0, Gone())\n"
            "from engine import config as C\n"
            "try:\n"
            "    C.from_dict({'train': {'report_to': ['mlflow']}})\n"
            "except C.ConfigError as e:\n"
            "    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "train.report_to: 'mlflow' needs the mlflow-skinny package" in out.stdout
    assert "pip install mlflow-skinny" in out.stdout


def test_an_unknown_tracker_is_refused_naming_the_choices():
    with pytest.raises(C.ConfigError) as e:
        C.from_dict({"train": {"report_to": ["tensorbord"]}}, check_files=False)
    assert "train.report_to[0]: 'tensorbord' is not one of 'tensorboard', 'wandb', 'mlflow', 'trackio'" in str(e.value)


def test_trackers_write_inside_the_run_folder_unless_the_user_pointed_them_elsewhere(tmp_path):
    env = trackers.environment(tmp_path / "r", ["tensorboard", "mlflow", "wandb", "trackio"], env={})
    assert env["TENSORBOARD_LOGGING_DIR"] == str((tmp_path / "r" / "tensorboard").resolve())
    assert env["MLFLOW_TRACKING_URI"] == (tmp_path / "r" / "mlflow").resolve().as_uri()
    assert env["WANDB_MODE"] == "offline" and env["WANDB_DIR"] == str((tmp_path / "r").resolve())
    assert env["TRACKIO_DIR"] == str((tmp_path / "r" / "trackio").resolve())
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    mine = trackers.environment(tmp_path / "r", ["mlflow", "wandb"],
                                env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:5000", "NETRC": str(netrc)})
    assert "MLFLOW_TRACKING_URI" not in mine and mine["WANDB_MODE"] == "online"


def test_the_train_tab_says_how_to_open_each_tracker_of_the_watched_run(tracked_run):
    from webui.train import trackers_markdown
    run_dir, _ = tracked_run
    text = trackers_markdown(run_dir)
    assert f"`tensorboard --logdir {run_dir / 'tensorboard'}`" in text
    assert f"trackio show --project whetstone" in text and "mlflow ui --backend-store-uri" in text
    assert "Weights" not in text  # only the trackers this run reports to
