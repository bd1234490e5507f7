"""The run queue without training: entries that keep their order and names, cancel that never touches a
running run, a dispatcher that dies half-way, the GPU placement of side-by-side runs, and the grid check
of a sweep. (Queued runs that really train: tests/test_sweep.py and tests/test_queue_browser.py.)"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import config as C
from engine.config import grid as G
from engine.config import queue as QS
from engine.runs import launcher, placement, sweep
from engine.runs import queue as Q
from engine.runs import queue_runner as R
from engine.runs.processes import spawn, worker_alive
from tests.conftest import REPO


@pytest.fixture
def base(tmp_path) -> C.RunConfig:
    """A valid config on the default model and the bundled identity set (nothing here trains it)."""
    cfg = C.replace(C.RunConfig(), "output.saves_dir", str(tmp_path / "saves"))
    return C.replace(cfg, "train.max_steps", 2)


def saves_of(cfg: C.RunConfig) -> Path:
    return Path(cfg.output.saves_dir)


# ---------------------------------------------------------------------------------------------
# Entries: order, names, cancel, move
# ---------------------------------------------------------------------------------------------

def test_queued_runs_keep_their_order_and_get_names_that_never_collide(base):
    saves = saves_of(base)
    names = Q.add(saves, [base, C.replace(base, "method.lora.rank", 32)])
    names += Q.add(saves, [C.replace(base, "output.run_name", "mine")])
    assert names[1] == names[0] + "-2" and names[2] == "mine"  # generated in the same second: kept apart
    q = Q.read(saves)
    assert [e.name for e in q.entries] == names
    assert q.entries[1].run_config.method.lora.rank == 32
    assert q.entries[2].run_config.output.run_name == "mine"
    assert q.entries[0].run_config.output.saves_dir == str(saves.resolve())
    with pytest.raises(Q.QueueError, match="already exists or is queued"):
        Q.add(saves, [C.replace(base, "output.run_name", "mine")])

    assert Q.move(saves, "mine", -1) == 1 and Q.move(saves, "mine", -5) == 0
    assert [e.name for e in Q.read(saves).entries] == ["mine", names[0], names[1]]
    assert Q.move(saves, names[0], +1) == 2
    assert [e.name for e in Q.read(saves).entries] == ["mine", names[1], names[0]]


def test_a_bad_run_among_several_queues_none_of_them(base, tmp_path):
    saves = saves_of(base)
    with pytest.raises(C.ConfigError) as e:
        Q.add(saves, [base, C.replace(base, "train.learning_rate", -1.0)])
    assert "train.learning_rate" in str(e.value)
    bad_rows = tmp_path / "rows.json"
    bad_rows.write_text(json.dumps([{"instruction": "Who are you?", "output": "Wren."}, {"instruction": "Name?"}]))
    with pytest.raises(launcher.DataProblems) as e:
        Q.add(saves, [base, C.replace(base, "data.datasets", [str(bad_rows)])])
    assert "row 2" in str(e.value)
    assert Q.read(saves).entries == []


def test_cancel_removes_a_waiting_run_and_never_touches_a_running_one(base):
    saves = saves_of(base)
    waiting, _ = Q.add(saves, [base, C.replace(base, "method.lora.rank", 4)])
    # A run that is going: its folder and a live worker process named in its worker.json.
    running = saves / "going"
    running.mkdir(parents=True)
    C.save(C.replace(base, "output.run_name", "going"), running / "config.yaml")
    proc = spawn([sys.executable, "-c", "import time; time.sleep(120)"], worker_file=running / "worker.json")
    try:
        assert worker_alive(running)
        with pytest.raises(Q.QueueError, match="already running"):
            Q.cancel(saves, "going")
        time.sleep(0.2)
        assert proc.poll() is None and worker_alive(running)  # untouched
        assert Q.cancel(saves, waiting) == f"Removed {waiting} from the queue."
        assert waiting not in [e.name for e in Q.read(saves).entries] and len(Q.read(saves).entries) == 1
        with pytest.raises(Q.QueueError, match="not in the queue"):
            Q.cancel(saves, waiting)
    finally:
        proc.kill()
        proc.wait()


def test_an_entry_a_dead_dispatcher_had_started_is_never_started_again(base):
    """A dispatcher killed between starting the run and removing the entry: the run's folder tells."""
    saves = saves_of(base)
    (name,) = Q.add(saves, [base])
    with Q.locked(saves):
        q = Q.read(saves)
        q.entries[0].claimed = time.time()
        Q.write(saves, q)
    (saves / name).mkdir()
    C.save(C.replace(base, "output.run_name", name), saves / name / "config.yaml")  # what create_run left
    assert R.dispatch(saves) == []
    assert Q.read(saves).entries == [] and not (saves / name / "worker.json").exists()


def test_an_entry_that_went_bad_while_waiting_says_why_and_keeps_its_place(base, tmp_path):
    data = tmp_path / "rows.json"
    data.write_text(json.dumps([{"instruction": "Who are you?", "output": "Wren."}] * 4))
    cfg = C.replace(base, "data.datasets", [str(data)])
    saves = saves_of(cfg)
    (name,) = Q.add(saves, [cfg])
    data.unlink()  # the file goes away before the run's turn
    assert R.dispatch(saves) == []
    (e,) = Q.read(saves).entries
    assert e.name == name and "rows.json" in e.error and e.claimed is None
    assert not (saves / name).exists() and not R.pending(saves)  # nothing waits: the runner may rest


def test_one_runner_per_saves_folder(base):
    """A second runner finds the first one's lock and leaves at once."""
    saves = saves_of(base)
    Q.folder(saves).mkdir(parents=True)
    first = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                              "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
                              str(Q.folder(saves) / R.RUNNER_LOCK)], stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "held"
        assert R.runner_alive(saves)
        out = subprocess.run([sys.executable, "-m", "engine.runs.queue_runner", "--saves", str(saves)], cwd=REPO,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0 and "another runner already works the queue" in out.stdout
    finally:
        first.kill()
        first.wait()
    assert not R.runner_alive(saves)


# ---------------------------------------------------------------------------------------------
# Several GPUs: which queued runs start, and where
# ---------------------------------------------------------------------------------------------

def test_without_a_gpu_list_runs_go_one_at_a_time():
    assert placement.assign([("a", 1), ("b", 1)], [], []) == [("a", None)]
    assert placement.assign([("a", 1)], [None], []) == []
    assert placement.assign([("a", 1)], [], [0]) == [("a", None)]


def test_single_gpu_runs_share_out_the_free_gpus_in_queue_order():
    waiting = [("a", 1), ("b", 1), ("c", 1), ("d", 1), ("e", 1)]
    assert placement.assign(waiting, [], [0, 1, 2, 3]) == [("a", [0]), ("b", [1]), ("c", [2]), ("d", [3])]
    assert placement.assign(waiting, [[1], [3]], [0, 1, 2, 3]) == [("a", [0]), ("b", [2])]
    assert placement.assign(waiting, [[0], [1], [2], [3]], [0, 1, 2, 3]) == []


def test_a_run_of_several_processes_takes_several_gpus_and_nobody_overtakes_it():
    gpus = [0, 1, 2, 3]
    assert placement.assign([("big", 2), ("a", 1)], [[0]], gpus) == [("big", [1, 2]), ("a", [3])]
    assert placement.assign([("big", 3), ("a", 1)], [[0]], gpus) == [("big", [1, 2, 3])]
    assert placement.assign([("big", 4), ("a", 1)], [[0]], gpus) == []  # waits; "a" waits behind it
    assert placement.assign([("huge", 8)], [], gpus) == [("huge", None)]  # more than the list: alone
    assert placement.assign([("huge", 8)], [[2]], gpus) == []


def test_a_run_the_queue_did_not_place_keeps_every_gpu_busy():
    assert placement.assign([("a", 1)], [None], [0, 1]) == []


def test_the_gpu_setting_is_typed_and_checked(tmp_path):
    assert QS.parse_gpus("0, 1,3").gpus == [0, 1, 3] and QS.parse_gpus("").gpus == []
    for bad, word in (("0,a", "'a' is not a GPU index"), ("1,1", "names a GPU twice"), ("-1", "not a GPU index")):
        with pytest.raises(QS.QueueSettingsError, match=word):
            QS.parse_gpus(bad)
    QS.save(tmp_path, QS.parse_gpus("2,3"))
    assert QS.load(tmp_path).gpus == [2, 3]
    (tmp_path / QS.SETTINGS_FILE).write_text("gpus: [a]\n")
    assert QS.load(tmp_path).gpus == []  # an unreadable setting falls back to one run at a time


# ---------------------------------------------------------------------------------------------
# A sweep's grid
# ---------------------------------------------------------------------------------------------

def test_grid_values_are_read_like_set_and_every_combination_is_made_in_order(base):
    cfgs, combos, axes = G.expand(C.to_dict(base), ["train.learning_rate=1e-4,3e-4",
                                                    "method.lora.targets=[q_proj,v_proj],all"])
    assert [(c.train.learning_rate, c.method.lora.targets) for c in cfgs] == [
        (1e-4, ["q_proj", "v_proj"]), (1e-4, "all"), (3e-4, ["q_proj", "v_proj"]), (3e-4, "all")]
    assert sweep.run_names("lr", combos)[0] == "lr-1-learning_rate_1e-4-targets_q_proj.v_proj"


def test_a_bad_grid_gets_one_error_naming_every_problem(base):
    with pytest.raises(C.ConfigError) as e:
        G.expand(C.to_dict(base), ["train.learning_rate=fast,3e-4", "method.lora.rnk=4", "train.epochs=",
                                   "output.run_name=a,b", "nonsense"])
    text = str(e.value)
    for words in ("method.lora.rnk: unknown field; did you mean method.lora.rank?",
                  "train.epochs: no values", "output.run_name: a sweep names its runs",
                  "'nonsense': expected dotted.key=value1,value2",
                  "train.learning_rate: expected a number, got str 'fast' (in run 1 of 2)"):
        assert words in text, text
    with pytest.raises(C.ConfigError, match="give at least one"):
        G.expand(C.to_dict(base), [])


def test_a_grid_of_more_than_64_runs_needs_confirming(base):
    specs = ["train.seed=" + ",".join(map(str, range(9))), "method.lora.rank=" + ",".join(map(str, range(1, 9)))]
    with pytest.raises(C.ConfigError, match="makes 72 runs .*--yes"):
        G.expand(C.to_dict(base), specs)
    assert len(G.expand(C.to_dict(base), specs, confirmed=True)[0]) == 72


def test_the_sweep_command_refuses_a_bad_grid_before_queueing_anything(tmp_path):
    saves = tmp_path / "saves"
    out = subprocess.run([sys.executable, "app.py", "sweep", "presets/quickstart.yaml", "--set",
                          f"output.saves_dir={saves}", "--grid", "train.learning_rate=1e-4,-3",
                          "--grid", "train.bogus=1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr
    assert "Nothing was queued" in out.stderr and "train.bogus: unknown field" in out.stderr
    assert "train.learning_rate: must be greater than 0.0, got -3" in out.stderr
    assert not saves.exists() or not Q.read(saves).entries and not sweep.names(saves)


def test_with_a_gpu_list_queued_runs_start_side_by_side_each_seeing_only_its_gpu(base):
    """The placement reaches the workers: two queued runs start in one pass, one GPU each (read from each
    worker process's own environment), and a third waits for a free GPU."""
    saves = saves_of(base)
    names = Q.add(saves, [base, C.replace(base, "method.lora.rank", 4), C.replace(base, "method.lora.rank", 2)])
    QS.save(Q.folder(saves), QS.parse_gpus("0,1"))
    try:
        assert R.dispatch(saves) == names[:2]
        seen = {}
        for name in names[:2]:
            pid = json.loads((saves / name / "worker.json").read_text())["pid"]
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            seen[name] = [v.decode() for v in env if v.startswith(b"CUDA_VISIBLE_DEVICES=")]
        assert seen == {names[0]: ["CUDA_VISIBLE_DEVICES=0"], names[1]: ["CUDA_VISIBLE_DEVICES=1"]}
        assert [s["gpus"] for s in Q.read(saves).started] == [[0], [1]]
        assert R.dispatch(saves) == [] and [e.name for e in Q.read(saves).entries] == names[2:]
    finally:
        for name in names[:2]:
            launcher.stop(saves / name, grace_s=5, wait=True)
