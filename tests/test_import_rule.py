"""The house rule, checked on the imports themselves: the UI process and the CLI stay light.

engine/config, runs, data, preflight and cli (the light packages), webui/ and app.py never import an ML
library (torch, transformers, peft, trl, bitsandbytes, accelerate, llama_cpp) nor a heavy engine package
(modeling, train, chat, export, evaluate), at module level or inside a function; and no engine module
imports gradio or plotly. Every import statement is read from the source (AST), so an import that only
runs on some code path is caught too; importing the light packages for real then proves the closure.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
LIGHT = ("config", "runs", "data", "preflight", "cli")
HEAVY = ("modeling", "train", "chat", "export", "evaluate")
ML = ("torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "llama_cpp")
UI = ("gradio", "plotly")


def modules_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def imported(path: Path) -> list[tuple[int, str]]:
    """(line, dotted name) of every module an import statement in the file names, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]  # `from engine import train`
    return out


def forbidden(name: str, libraries: tuple[str, ...]) -> bool:
    top = name.split(".")[0]
    heavy = name.startswith("engine.") and name.split(".")[1] in HEAVY
    return top in libraries or heavy


def shown(p: Path) -> str:
    return str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)


def violations(files: list[Path], libraries: tuple[str, ...]) -> list[str]:
    return [f"{shown(p)}:{line} imports {name}"
            for p in files for line, name in imported(p) if forbidden(name, libraries)]


def test_every_engine_package_is_light_or_heavy():
    packages = sorted(p.name for p in (REPO / "engine").iterdir() if (p / "__init__.py").is_file())
    assert packages == sorted(LIGHT + HEAVY)
    loose = [p.name for p in (REPO / "engine").glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"every engine module lives in a light or a heavy package: {loose}"


def test_light_packages_never_import_ml_libraries_or_heavy_packages():
    files = [p for pkg in LIGHT for p in modules_in(REPO / "engine" / pkg)]
    assert len(files) > 30
    assert violations(files, ML) == []


def test_the_ui_and_the_cli_never_import_ml_libraries_or_heavy_packages():
    files = modules_in(REPO / "webui") + [REPO / "app.py"]
    assert violations(files, ML) == []


def test_the_engine_never_imports_the_ui_libraries():
    bad = [f"{shown(p)}:{line} imports {name}" for p in modules_in(REPO / "engine")
           for line, name in imported(p) if name.split(".")[0] in UI]
    assert bad == []


def test_the_checker_sees_an_import_hidden_inside_a_function(tmp_path):
    sneaky = tmp_path / "sneaky.py"
    sneaky.write_text("def later():\n    from engine.train import stages\n    import torch.nn as nn\n")
    assert violations([sneaky], ML) == [f"{sneaky}:2 imports engine.train", f"{sneaky}:2 imports engine.train.stages",
                                         f"{sneaky}:3 imports torch.nn"]


@pytest.mark.parametrize("entry", ["light", "app"])
def test_importing_the_light_packages_leaves_ml_libraries_unloaded(entry):
    names = [".".join(p.relative_to(REPO).with_suffix("").parts) for pkg in LIGHT
             for p in modules_in(REPO / "engine" / pkg)]
    names = [n.removesuffix(".__init__") for n in names] + (["app"] if entry == "app" else [])
    code = ("import importlib, sys\n"
            f"for m in {names!r}: importlib.import_module(m)\n"
            f"print(','.join(m for m in {ML!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"heavy modules imported: {out.stdout}"
