"""The Dataset tab's data, computed in the UI process without torch: format, rows, problems named,
a page of rows, the token-length histogram with the cutoff, and the highlighted example."""
from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO
from engine import config as C
from engine.data import light_tokenizer, preview


def cfg_with(tiny_model_dir, **data):
    cfg = C.replace(C.RunConfig(), "model.name_or_path", str(tiny_model_dir))
    for k, v in data.items():
        cfg = C.replace(cfg, f"data.{k}", v)
    return cfg


def test_preview_never_imports_torch_or_transformers(tiny_model_dir):
    code = ("import sys; from engine import config as C; from engine.data import preview; "
            f"cfg = C.replace(C.RunConfig(), 'model.name_or_path', {str(tiny_model_dir)!r}); "
            "i = preview.inspect('identity', cfg); it = preview.first_example(i); "
            "tok, _ = preview.tokenizer_for(cfg); preview.example_html(tok, it.example, 1024); preview.page(i); "
            "assert i.lengths and not i.error; "
            "bad = [m for m in ('torch', 'transformers', 'gradio', 'plotly') if m in sys.modules]; "
            "assert not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr


def test_inspect_counts_problems_and_rows_over_the_cutoff(tmp_path, tiny_model_dir):
    p = tmp_path / "mixed.jsonl"
    rows = [{"instruction": "hi", "output": "hello"}, {"instruction": "", "output": ""},
            {"instruction": "long " * 200, "output": "ok"}, {"instruction": "x"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    i = preview.inspect(str(p), cfg_with(tiny_model_dir, cutoff_len=100))
    assert (i.format, i.rows, i.counts.empty, i.counts.missing, i.over_cutoff) == ("alpaca", 4, 1, 1, 1)
    assert f"{p}, row 4 (line 4): has no `output`" in i.counts.problems[1]
    assert "4 rows, 1 empty, 1 missing a needed field, 1 longer than cutoff_len=100" in i.summary()
    df = preview.page(i, 0, 3)
    assert list(df["row"]) == [1, 2, 3] and list(df.columns) == ["row", "instruction", "output", "problem"]
    assert df.loc[1, "problem"].endswith("is empty: every field is blank")
    h = preview.histogram(i.lengths, 100, bins=10)
    assert (h["total"], h["over"], sum(h["counts"]), h["cutoff"]) == (2, 1, 2, 100)


def test_unreadable_file_gives_the_error_not_an_exception(tmp_path, tiny_model_dir):
    p = tmp_path / "broken.jsonl"
    p.write_text('{"text": "a"}\n{"text": \n')
    i = preview.inspect(str(p), cfg_with(tiny_model_dir))
    assert i.error.startswith(f"{p}: line 2 is not valid JSON")


def test_highlighted_example_marks_trained_masked_and_cut_tokens(tiny_model_dir):
    cfg = cfg_with(tiny_model_dir)
    i = preview.inspect("identity", cfg)
    tok, _ = preview.tokenizer_for(cfg)
    it = preview.first_example(i)
    html_full = preview.example_html(tok, it.example, 1024)
    # the first identity row, as the model sees it: the prompt greyed, the reply highlighted
    assert '<span class="t masked" title="token 1: id 1">&lt;|im_start|&gt;</span>' in html_full
    assert '<span class="t trained" title="token 35: id 57">I</span>' in html_full
    assert '<span class="t trained" title="token 36: id 744"> am</span>' in html_full
    assert '<span class="t masked" title="token 34: id 198">↵\n</span>' in html_full  # newline before the reply
    assert f"{it.encoded.length} tokens: " in html_full
    assert f'{it.encoded.trained_tokens} trained (loss)' in html_full
    html_cut = preview.example_html(tok, it.example, 40)
    assert f'{it.encoded.length - 40} cut by cutoff_len=40' in html_cut
    assert html_cut.count('class="t cut"') == it.encoded.length - 40


def test_missing_tokenizer_still_previews_rows():
    j = preview.inspect("identity", C.replace(C.RunConfig(), "model.name_or_path", "nobody/not-downloaded"))
    assert j.rows == 92 and not j.lengths and "not on this machine" in " ".join(j.notes)
