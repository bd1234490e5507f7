"""`python app.py train` with a broken dataset prints the precise problem and starts nothing; with a
good one it prints the data report before training."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO, write_config


def _bad_files(tmp_path):
    good = json.dumps({"instruction": "q", "output": "a"})
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text("\n".join([good] * 36 + ['{"instruction": "q", "output": '] + [good] * 3) + "\n")
    js = tmp_path / "bad.json"
    js.write_text(json.dumps([{"instruction": "q", "output": "a"}] * 11 + [{"instruction": "q"}], indent=1))
    csv = tmp_path / "bad.csv"
    csv.write_bytes(b"instruction,output\nq,a\nq,caf\xe9\n")
    parquet = tmp_path / "bad.parquet"
    parquet.write_bytes(b"PAR1 this is not really parquet")
    return {jsonl: [f"{jsonl}: line 37 is not valid JSON", "truncated"],
            js: [f"{js}, row 12 (line 46): has no `output`", "on_bad_rows"],
            csv: [f"{csv}: line 3 is not UTF-8 text", "iconv"],
            parquet: [f"{parquet}: is not a readable Parquet file"]}


def test_cli_prints_the_precise_error_for_a_bad_file_of_each_type(tmp_path, tiny_model_dir):
    for path, expected in _bad_files(tmp_path).items():
        cfg = write_config(tmp_path, tiny_model_dir, data={"datasets": [str(path)]},
                           output={"run_name": f"bad-{path.suffix[1:]}", "saves_dir": str(tmp_path / "saves")})
        p = subprocess.run([sys.executable, "app.py", "train", str(cfg)], cwd=REPO, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 2, p.stderr
        for text in expected:
            assert text in p.stderr, (path, p.stderr)
        assert not (tmp_path / "saves").exists()  # nothing was started, no run folder made


def test_worker_reports_long_rows_before_training(tmp_path, make_config):
    """The worker checks again with the real tokenizer: over-long rows fail with the row named."""
    from conftest import run_worker
    long = tmp_path / "long.jsonl"
    long.write_text(json.dumps({"instruction": "x " * 300, "output": "y"}) + "\n")
    cfg = make_config(data={"datasets": [str(long)], "cutoff_len": 64, "on_long_rows": "fail"})
    proc = run_worker(cfg)
    assert proc.returncode == 1
    events = [json.loads(l) for l in (cfg.parent / "events.jsonl").read_text().splitlines()]
    err = next(e for e in events if e["kind"] == "error")
    assert f"{long}, row 1 (line 1): " in err["message"] and "longer than data.cutoff_len=64" in err["message"]
