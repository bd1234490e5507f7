"""A user with a SLURM cluster: `python app.py launch-script CONFIG --nodes N` gives a file that sbatch
runs as one torchrun per node, each with its own node rank, all meeting at the first node."""
import os
import shlex
import stat
import subprocess

import yaml

import app
from engine.runs import torchrun as cluster_script
from engine import config as C
from tests.conftest import REPO, write_config


def _exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_launch_script_creates_the_run_and_a_batch_file_with_the_right_arguments(tmp_path, tiny_model_dir, capsys):
    cfg_path = write_config(tmp_path / "src", tiny_model_dir, output={"run_name": "big", "saves_dir": str(tmp_path)})
    code = app.main(["launch-script", str(cfg_path), "--nodes", "3", "--gpus-per-node", "2",
                     "--set", "distributed.strategy=fsdp", "--master-addr", "10.0.0.5"])
    assert code == 0
    run_dir = tmp_path / "big"
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["distributed"]
    assert saved["nnodes"] == 3 and saved["nproc_per_node"] == 2 and saved["strategy"] == "fsdp"
    text = (run_dir / "slurm.sbatch").read_text()
    assert text.startswith("#!/bin/bash\n")
    for line in ["#SBATCH --nodes=3", "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=2",
                 "#SBATCH --signal=TERM@120"]:
        assert line in text.splitlines(), line
    assert subprocess.run(["bash", "-n", str(run_dir / "slurm.sbatch")]).returncode == 0
    out = capsys.readouterr().out
    nodes = [shlex.split(line.split(": ", 1)[1]) for line in out.splitlines() if line.strip().startswith("node ")]
    assert len(nodes) == 3
    for i, argv in enumerate(nodes):
        assert argv[1:3] == ["-m", "torch.distributed.run"]
        for a in ["--nnodes=3", "--nproc_per_node=2", f"--node_rank={i}", "--rdzv_backend=c10d",
                  "--rdzv_endpoint=10.0.0.5:29500", "--rdzv_id=big"]:
            assert a in argv, (a, argv)
        assert argv[-4:] == ["-m", "engine.train", "--config", str(run_dir / "config.yaml")]
    # The same name again is refused rather than overwriting a run.
    assert app.main(["launch-script", str(cfg_path), "--nodes", "2"]) == 2


def test_the_batch_file_starts_one_torchrun_per_node_with_that_nodes_rank(tmp_path, tiny_model_dir):
    """Run the generated file under stand-ins for scontrol, srun and python that record what they get."""
    cfg_path = write_config(tmp_path, tiny_model_dir, distributed={"nnodes": 3, "nproc_per_node": 4,
                                                                   "strategy": "ddp"})
    cfg = C.load(cfg_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.log"
    _exe(bin_dir / "scontrol", "#!/bin/bash\nprintf 'gpu-a\\ngpu-b\\ngpu-c\\n'\n")
    # srun: one task per node, each with its own SLURM_NODEID (as SLURM does)
    _exe(bin_dir / "srun", "#!/bin/bash\nwhile [[ $1 == --* ]]; do shift; done\n"
                           "for n in 0 1 2; do SLURM_NODEID=$n \"$@\"; done\n")
    fake_python = _exe(bin_dir / "python", f"#!/bin/bash\nprintf '%s\\n' \"$@\" > {log}.$SLURM_NODEID\n")
    script = tmp_path / "job.sbatch"
    script.write_text(cluster_script.slurm_script(cfg, cfg_path, REPO, python=str(fake_python)))
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SLURM_JOB_NODELIST="gpu-[a-c]",
               SLURM_JOB_ID="4242")
    out = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for node in range(3):
        argv = (tmp_path / f"argv.log.{node}").read_text().splitlines()
        assert argv[:2] == ["-m", "torch.distributed.run"]
        for a in ["--nnodes=3", "--nproc_per_node=4", f"--node_rank={node}", "--rdzv_backend=c10d",
                  "--rdzv_endpoint=gpu-a:29500", "--rdzv_id=4242"]:
            assert a in argv, (a, argv)
        assert argv[-4:] == ["-m", "engine.train", "--config", str(cfg_path)]
