"""The identity helper: an assistant's name and maker -> an identity dataset from the bundled template set
(data/reference/identity_template.json, as ms-swift's self-cognition set and LLaMA-Factory's identity file
do), with a held-out file of phrasings not in it for the report card. `python app.py identity` and the
Dataset tab's panel both call `build` and `save`. Light (stdlib)."""
from __future__ import annotations

import json
import re
from pathlib import Path

from engine.data import names as dataset_names
from engine.runs.atomic import write_text
from engine.runs.paths import REPO

TEMPLATE = REPO / "data" / "reference" / "identity_template.json"
SAVE_AS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,59}$")
MAX_LEN = 80


class IdentityError(ValueError):
    """A name, maker or file name that cannot be used, said so that the user can fix it."""


def _check(field: str, value: str) -> str:
    value = " ".join(str(value or "").split())
    if not value:
        raise IdentityError(f"{field}: empty; type the assistant's {field}")
    if len(value) > MAX_LEN:
        raise IdentityError(f"{field}: {len(value)} characters; keep it under {MAX_LEN}")
    if any(c in value for c in "{}"):
        raise IdentityError(f"{field}: may not contain braces")
    return value


def build(name: str, maker: str, template: Path = TEMPLATE) -> tuple[list[dict], list[dict]]:
    """(training rows, held-out rows) in alpaca format, every answer naming the assistant."""
    name, maker = _check("name", name), _check("maker", maker)
    t = json.loads(template.read_text(encoding="utf-8"))

    def fill(rows: list[dict]) -> list[dict]:
        return [{"instruction": r["instruction"], "input": "",
                 "output": r["output"].replace("{name}", name).replace("{maker}", maker)} for r in rows]
    return fill(t["train"]), fill(t["held_out"])


def default_save_as(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_-]+", "_", str(name or "").strip().lower()).strip("_-")[:40]
    return f"identity_{slug}" if slug else "identity_mine"


def paths(save_as: str, folder: Path | None = None) -> tuple[Path, Path]:
    """(dataset file, held-out file) a save would write."""
    save_as = str(save_as or "").strip().removesuffix(".json")
    if not SAVE_AS_RE.match(save_as):
        raise IdentityError(f"save as: {save_as!r} may only hold letters, digits, '_' and '-' (up to 60), "
                            "starting with a letter or digit")
    if save_as.endswith("_eval"):
        raise IdentityError("save as: may not end in _eval (that suffix marks the held-out file)")
    folder = Path(folder) if folder is not None else dataset_names.uploads_dir()
    return folder / f"{save_as}.json", folder / f"{save_as}_eval.json"


def save(name: str, maker: str, save_as: str, folder: Path | None = None, overwrite: bool = False
         ) -> tuple[Path, Path]:
    """Write the dataset and its held-out file (data/uploads/ unless folder says otherwise); refuses to
    replace existing files unless overwrite."""
    train, held = build(name, maker)
    train_path, held_path = paths(save_as, folder)
    if not overwrite and (train_path.exists() or held_path.exists()):
        raise IdentityError(f"save as: {train_path.name} already exists in {train_path.parent}; pick another "
                            "name, or overwrite it")
    train_path.parent.mkdir(parents=True, exist_ok=True)
    write_text(held_path, json.dumps(held, ensure_ascii=False, indent=1) + "\n")
    write_text(train_path, json.dumps(train, ensure_ascii=False, indent=1) + "\n")
    return train_path, held_path
