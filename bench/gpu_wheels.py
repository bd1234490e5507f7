"""Everything bench/gpu_acceptance.py needs on the lent GPU machine that its image lacks, in one
git-ignored folder (.gpu/) that travels with the working tree (64 MiB in all, the tree included):

  .gpu/wheels/       the pinned wheels below (Python 3.12, manylinux x86_64), DeepSpeed built from its sdist
  .gpu/model/        the default model's tokenizer, chat template and config.json (no weights: the script
                     initialises random ones there, which is all a memory or speed figure needs)
  .gpu/hf_baseline.py  ../shared/bench/hf_baseline.py (the peer; ../shared does not travel)

The image already has torch 2.11, transformers 5.17, huggingface_hub 1.33, accelerate 1.15, triton, pandas,
pyarrow, xxhash, einops, msgpack, ninja, py-cpuinfo: those are not carried (transformers 5.25 would need
huggingface_hub 2.x and more, past the budget). flash-attn has no wheel on PyPI and its builds run to
hundreds of MB: it does not travel, which is why packing uses torch's own varlen kernel.

  python bench/gpu_wheels.py            # fetch, then print the sizes and the command to run there
  python bench/gpu_wheels.py --check    # also: install them with the image's transformers / hub /
                                        # accelerate versions into a scratch folder here and run
                                        # gpu_acceptance.py --dry-run on that stack (CPU)
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GPU = REPO / ".gpu"
BUDGET = 64 * 2**20
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64"]
WHEELS = {  # what travels, pinned (the versions CI uses here where the image lacks the package)
    "bitsandbytes": "0.50.2",   # QLoRA's 4-bit weights and 8-bit optimizers (43 MB: most of the budget)
    "liger-kernel": "0.8.5",    # fused RMSNorm / RoPE / SwiGLU / linear cross-entropy (Triton from the image)
    "peft": "0.21.2",
    "trl": "1.16.0",            # preference stages
    "datasets": "5.2.0",        # trl's rows
    "dill": "0.4.1", "multiprocess": "0.70.19",  # datasets' needs the image lacks
    "hjson": "3.1.0", "pydantic": "2.14.4", "pydantic-core": "2.50.5", "annotated-types": "0.8.0",
    "typing-inspection": "0.4.5", "typing-extensions": "4.16.0",  # DeepSpeed's needs the image lacks
}
SDIST_WHEELS = {"deepspeed": "0.19.8"}  # no wheel on PyPI: built here, pure Python (ops compile at first use)
# --check only: the image's versions of what it has (seen there: transformers 5.17.0, huggingface_hub 1.33.0,
# accelerate 1.15.0), and DeepSpeed's needs the image has but this machine's venv may lack (any version).
IMAGE_STACK = ["transformers==5.17.0", "huggingface-hub==1.33.0", "accelerate==1.15.0", "einops", "msgpack",
               "py-cpuinfo", "ninja"]
MODEL_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "config.json",
               "generation_config.json", "special_tokens_map.json")


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args, "--disable-pip-version-check", "-q"], check=True)


def download(specs: dict, dest: Path) -> None:
    plat = [a for p in PLATFORMS for a in ("--platform", p)]
    pip("download", "--no-deps", "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
        *plat, "-d", str(dest), *[f"{k}=={v}" for k, v in specs.items()])


def fetch() -> None:
    wheels = GPU / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    download(WHEELS, wheels)
    for name, version in SDIST_WHEELS.items():
        if not list(wheels.glob(f"{name}-{version}-*.whl")):
            env = dict(os.environ, DS_BUILD_OPS="0")
            subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(wheels), f"{name}=={version}"], check=True, env=env)
    wanted = {k.replace("-", "_").lower() for k in (*WHEELS, *SDIST_WHEELS)}
    for w in wheels.glob("*.whl"):  # keep one version of each: two stop the whole install there
        name, version = w.name.split("-")[:2]
        pins = {k.replace("-", "_").lower(): v for k, v in {**WHEELS, **SDIST_WHEELS}.items()}
        if name.lower() not in wanted or pins[name.lower()] != version:
            w.unlink()
    from engine.modeling.load import ensure_embedded
    src = ensure_embedded("smollm2-135m-instruct")
    (GPU / "model").mkdir(exist_ok=True)
    for f in MODEL_FILES:
        if (src / f).is_file():
            shutil.copy2(src / f, GPU / "model" / f)
    baseline = REPO.parent / "shared" / "bench" / "hf_baseline.py"
    if not baseline.is_file():
        sys.exit(f"no baseline at {baseline}: the speed comparison needs it")
    shutil.copy2(baseline, GPU / "hf_baseline.py")


def travelling_bytes() -> int:
    """The working tree that travels: tracked and untracked-not-ignored files, plus .gpu/."""
    out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, check=True).stdout.decode().split("\0")
    tree = sum((REPO / f).stat().st_size for f in out if f and (REPO / f).is_file())
    return tree + sum(p.stat().st_size for p in GPU.rglob("*") if p.is_file())


COMMAND = ("python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "
           ".gpu/wheels/*.whl && export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 || exit; "
           "python3 bench/gpu_acceptance.py --out $OUT --work /tmp/whetstone-gpu --budget-s 480")
RERUN = ("export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1; python3 bench/gpu_acceptance.py --out $OUT "
         "--work /tmp/whetstone-gpu --budget-s 200 --only PARTS")


def check() -> int:
    """Install the carried wheels plus the image's transformers / hub / accelerate into a scratch folder and
    run the acceptance script's dry run on that stack (CPU; liger needs triton and is only imported there)."""
    with tempfile.TemporaryDirectory() as tmp:
        stack = Path(tmp) / "stack"
        pip("download", "--no-deps", "--only-binary=:all:", "-d", str(stack), *IMAGE_STACK)  # for this Python
        site = Path(tmp) / "site"
        whls = [str(w) for w in (GPU / "wheels").glob("*.whl") if not w.name.startswith(("multiprocess",
                                                                                           "pydantic_core"))]
        # multiprocess and pydantic-core are built for 3.12 only; this machine's Python takes its own copies.
        pip("install", "--no-index", "--no-deps", "--no-compile", "--target", str(site), *whls,
            *map(str, stack.glob("*.whl")))
        env = dict(os.environ, PYTHONPATH=f"{site}:{REPO}")
        probe = ("import transformers, huggingface_hub, accelerate, peft, trl, datasets, bitsandbytes, deepspeed;"
                 "print('stack:', *(f'{m.__name__} {m.__version__}' for m in (transformers, huggingface_hub,"
                 " accelerate, peft, trl, datasets, bitsandbytes, deepspeed)), sep='\\n  ')")
        rc = subprocess.run([sys.executable, "-c", probe], env=env).returncode
        if rc:
            return rc
        with tempfile.TemporaryDirectory() as out:
            return subprocess.run([sys.executable, str(REPO / "bench" / "gpu_acceptance.py"), "--dry-run",
                                   "--out", out], env=env, cwd=REPO).returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="also dry-run the acceptance script on that stack")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO))
    fetch()
    print(f"{'file':64} {'MiB':>7}")
    for p in sorted(GPU.rglob("*")):
        if p.is_file():
            print(f"{str(p.relative_to(REPO)):64} {p.stat().st_size / 2**20:7.2f}")
    total = travelling_bytes()
    print(f"travels in all (tree + .gpu): {total / 2**20:.1f} MiB of {BUDGET / 2**20:.0f} MiB")
    if total > BUDGET:
        print("over the transfer budget: drop a wheel (deepspeed's first)", file=sys.stderr)
        return 1
    print(f"\non the GPU machine: carry [\".gpu\"] and run (timeout_s 600):\n  {COMMAND}")
    print(f"a re-run of some parts at once on the still-warm machine (its models are reused):\n  {RERUN}")
    return check() if a.check else 0


if __name__ == "__main__":
    sys.exit(main())
