"""A user types a name and a maker and gets an identity dataset with held-out questions, which the
quickstart then trains on and the report card asks; bad names and taken file names are refused in words."""
import json
import subprocess
import sys

import pytest

from engine import config as C
from engine.data import held_out, identity
from tests.conftest import REPO


def test_the_helper_fills_every_answer_with_the_name_and_keeps_held_out_phrasings_apart():
    train, held = identity.build("Aria", "Acme Labs")
    assert len(train) >= 60 and len(held) >= 8
    assert all("Aria" in r["output"] for r in train + held)
    assert any("Acme Labs" in r["output"] for r in train)
    assert not any("{" in r["output"] for r in train + held)
    seen = {r["instruction"].lower().strip("?.! ") for r in train}
    assert not [r for r in held if r["instruction"].lower().strip("?.! ") in seen]
    assert held_out.infer_target([r["output"] for r in held]) == "Aria"


@pytest.mark.parametrize("name, maker, words", [("", "Acme", "name: empty"), ("Aria", "  ", "maker: empty"),
                                                ("A" * 200, "Acme", "under 80"), ("{x}", "Acme", "braces")])
def test_bad_names_are_refused_naming_the_field(name, maker, words):
    with pytest.raises(identity.IdentityError, match=words):
        identity.build(name, maker)


def test_saving_writes_the_set_and_its_held_out_file_and_never_overwrites_by_accident(tmp_path):
    train_path, held_path = identity.save("Aria", "Acme Labs", "identity_aria", tmp_path)
    assert (train_path.name, held_path.name) == ("identity_aria.json", "identity_aria_eval.json")
    assert json.loads(train_path.read_text())[0]["output"].count("Aria") >= 1
    with pytest.raises(identity.IdentityError, match="already exists"):
        identity.save("Other", "Acme Labs", "identity_aria", tmp_path)
    assert "Aria" in train_path.read_text()  # untouched
    identity.save("Other", "Acme Labs", "identity_aria", tmp_path, overwrite=True)
    assert "Other" in train_path.read_text()
    for bad in ("../escape", "a/b", "x_eval", ""):
        with pytest.raises(identity.IdentityError, match="save as"):
            identity.paths(bad, tmp_path)


def test_the_cli_writes_it_and_the_quickstart_pairs_its_held_out_file_by_itself(tmp_path):
    out = subprocess.run([sys.executable, "app.py", "identity", "--name", "Aria", "--maker", "Acme Labs",
                          "--out-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    path = tmp_path / "identity_aria.json"
    assert str(path) in out.stdout and "python app.py train presets/quickstart.yaml" in out.stdout
    again = subprocess.run([sys.executable, "app.py", "identity", "--name", "Aria", "--maker", "X",
                            "--out-dir", str(tmp_path)], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 2 and "already exists" in again.stderr
    # Swapping the dataset keeps the preset's retain setting, and the report card finds the held-out file.
    cfg = C.load(REPO / "presets" / "quickstart.yaml", [f"data.datasets=[{path}]"])
    assert cfg.retain.method != "none"
    assert held_out.source(cfg) == str(tmp_path / "identity_aria_eval.json")
    assert held_out.source(C.replace(cfg, "report.held_out", "none")) is None
    assert held_out.source(C.replace(cfg, "data.eval_datasets", ["identity_eval"])) == "identity_eval"


def test_the_bundled_quickstart_set_is_paired_with_its_bundled_held_out_file():
    cfg = C.load(REPO / "presets" / "quickstart.yaml")
    assert held_out.source(cfg) == "identity_eval"
    assert held_out.infer_target([r for _, r in held_out.questions("identity_eval")]) == "Wren"


def test_hits_count_the_whole_name_in_any_case():
    assert held_out.hit("i am WREN, hello", "Wren")
    assert not held_out.hit("Wrenfield is a town", "Wren")
    assert not held_out.hit("anything", "")


def test_the_dataset_tab_panel_previews_saves_and_makes_it_the_runs_dataset(tmp_path, monkeypatch):
    from webui import identity_panel, schedule_view
    monkeypatch.setenv("WHETSTONE_UPLOADS", str(tmp_path))
    message, table = identity_panel.on_preview("Aria", "Acme Labs")
    assert "80 training rows and 10 held-out questions" in message
    assert set(table["split"]) == {"train", "held out"} and table["answer"].str.contains("Aria").all()
    assert "Not made" in identity_panel.on_preview("", "Acme Labs")[0]
    message, _, datasets, picker = identity_panel.on_save("Aria", "Acme Labs", "", ["identity"])
    path = str(tmp_path / "identity_aria.json")
    assert "Saved" in message and datasets["value"] == [path] and picker["value"] == path
    assert path in datasets["choices"] and str(tmp_path / "identity_aria_eval.json") not in datasets["choices"]
    assert "already exists" in identity_panel.on_save("Aria", "X", "identity_aria", [path])[0]
    cfg = C.load(REPO / "presets" / "quickstart.yaml", [f"data.datasets=[{path}]"])
    shown = schedule_view.markdown(cfg)
    assert "80 + 40 general rows" in shown and "optimizer steps" in shown
