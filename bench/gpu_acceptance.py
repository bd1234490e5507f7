"""GPU acceptance: every GPU claim measured in one prepared run, one table printed, one JSON file written.

  python bench/gpu_acceptance.py --out DIR                 # the lent H200, ~8 minutes (see gpu_wheels.py)
  python bench/gpu_acceptance.py --dry-run --out DIR       # tiny shape on CPU: one step of each part

Parts, each in its own process (a crash in one leaves the others' figures), in this order:
  environment  versions, the packed-attention kernel, the measured bf16 matmul rate
  kernels      packed rows on the varlen kernel vs the padded SDPA batch (loss, gradients, beside the bf16
               noise floor); Liger + the fused head vs the plain path
  models       random-initialised 1b / 8b Llama shapes as safetensors folders (no weights travel)
  workers      LoRA and QLoRA SFT through the real worker on a repeated batch: loss finite and falling,
               memory in every train event, adapter saved and loaded back; measured peak vs the estimate
               at two batch sizes; QLoRA 8b at batch 1 and 2, cutoff 1024
  distributed  (beside workers) FSDP, DDP and DeepSpeed ZeRO-2 with one process: tests/test_distributed_gpu.py
  oom          the real CUDA out-of-memory test: tests/test_out_of_memory.py
  speed        bench/speed.py at 1b (batch 8) and 8b (batch 4, gradient checkpointing) against the peer
               (../shared/bench/hf_baseline.py, carried as .gpu/hf_baseline.py), Whetstone's defaults
In a dry run the pytest parts only collect their tests (they need CUDA), so a renamed test shows up here.
Whatever runs past --budget-s is skipped and said so; the JSON is rewritten after every part.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
GOALS = "1b: >=5x the peer's real tokens/s at <= its peak memory; 8b: >=5x and >=30% MFU; " \
        "QLoRA 8b <= 7 GiB; estimate within 25%"
OOM_TEST = "tests/test_out_of_memory.py::test_a_real_cuda_out_of_memory_fails_the_run_in_plain_words_and_frees_the_gpu"
DIST_TESTS = ["tests/test_distributed_gpu.py", "-k", "fsdp or ddp or deepspeed_zero2"]


def make_plan(dry: bool, work: Path, budget: float) -> dict:
    if dry:
        cases = {"lora-tiny": dict(size="tiny", method="lora", bs=2, cutoff=64, steps=2, words=60)}
        speed = [dict(size="tiny", steps=1, bs=2, maxlen=64, gc=False)]
        return dict(dry=True, work=str(work), sizes=["tiny"], cases=cases, load_back=["lora-tiny"], speed=speed,
                    deadline=time.time() + budget)
    cases = {"lora-1b": dict(size="1b", method="lora", bs=4, cutoff=1024, steps=6, words=1100),
             "qlora-1b": dict(size="1b", method="qlora", bs=4, cutoff=1024, steps=6, words=1100)}
    for bs in (1, 2):
        cases[f"lora-8b-bs{bs}"] = dict(size="8b", method="lora", bs=bs, cutoff=1024, steps=5, words=1100)
        cases[f"qlora-8b-bs{bs}"] = dict(size="8b", method="qlora", bs=bs, cutoff=1024, steps=5, words=1100, gc=True)
    speed = [dict(size="1b", steps=20, bs=8, maxlen=1024, gc=False), dict(size="8b", steps=12, bs=4, maxlen=1024,
                                                                          gc=True)]
    return dict(dry=False, work=str(work), sizes=["1b", "8b"], stand_in=True, cases=cases,
                load_back=["lora-1b", "qlora-1b"], speed=speed, deadline=time.time() + budget)


def child_env(plan: dict) -> dict:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
               TOKENIZERS_PARALLELISM="false", PYTHONPATH=f"{REPO}:{os.environ.get('PYTHONPATH', '')}")
    if plan.get("stand_in"):  # the pytest parts' default model: the random-weight stand-in (gpu_checks.models)
        env["WHETSTONE_CACHE"] = str(Path(plan["work"]) / "cache")
    return env


class Log:
    def __init__(self, path: Path):
        self.f = open(path, "a", encoding="utf-8")

    def __call__(self, title: str, text: str) -> None:
        self.f.write(f"\n===== {title} =====\n{text}\n")
        self.f.flush()


def run_part(name: str, plan: dict, plan_file: Path, log: Log, limit: float) -> dict:
    """One torch part in its own process; its dict comes back through a JSON file."""
    result = Path(plan["work"]) / f"part-{name}.json"
    result.unlink(missing_ok=True)
    t0 = time.time()
    try:
        out = subprocess.run([sys.executable, __file__, "--part", name, "--plan", str(plan_file)], cwd=REPO,
                             env=child_env(plan), capture_output=True, text=True, timeout=limit)
        log(name, out.stdout[-20000:] + out.stderr[-20000:])
        r = json.loads(result.read_text()) if result.is_file() else {"ok": False, "error": out.stderr[-3000:]}
    except subprocess.TimeoutExpired as e:
        r = {"ok": False, "error": f"timed out after {limit:.0f} s", "tail": str(e.stderr or "")[-2000:]}
    r["seconds"] = round(time.time() - t0, 1)
    return r


def pytest_cmd(plan: dict, tests: list[str]) -> list[str]:
    base = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "--timeout", "400"]
    return base + (["--collect-only"] if plan["dry"] else []) + tests


def finish_pytest(proc: subprocess.Popen, plan: dict, log: Log, name: str, t0: float) -> dict:
    try:
        so, se = proc.communicate(timeout=max(10, plan["deadline"] - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        so, se = proc.communicate()
    log(name, so[-20000:] + se[-5000:])
    lines = so.splitlines()
    figures = [json.loads(ln) for ln in lines if ln.startswith("{") and ln.endswith("}")]
    summary = next((ln for ln in reversed(lines) if " passed" in ln or " failed" in ln or " skipped" in ln
                    or " error" in ln or "collected" in ln or "tests collected" in ln), "")
    return {"ok": proc.returncode == 0, "returncode": proc.returncode, "summary": summary.strip("= "),
            "figures": figures, "collect_only": plan["dry"], "seconds": round(time.time() - t0, 1)}


def speed(plan: dict, log: Log) -> dict:
    from bench.speed import BASELINE, mfu
    if not BASELINE.is_file():
        return {"ok": False, "error": f"no peer baseline at {BASELINE}: run bench/gpu_wheels.py (it copies "
                                      "../shared/bench/hf_baseline.py into .gpu/)"}
    out = {"baseline": str(BASELINE.relative_to(REPO.parent)), "runs": []}
    for s in plan["speed"]:
        left = plan["deadline"] - time.time()
        if left < (30 if plan["dry"] else 120):
            out["runs"].append({"size": s["size"], "skipped": f"out of time ({left:.0f} s left)"})
            continue
        cmd = [sys.executable, str(REPO / "bench" / "speed.py"), "--size", s["size"], "--steps", str(s["steps"]),
               "--bs", str(s["bs"]), "--maxlen", str(s["maxlen"])] + (["--gc"] if s["gc"] else [])
        try:
            p = subprocess.run(cmd, cwd=REPO, env=child_env(plan), capture_output=True, text=True, timeout=left)
        except subprocess.TimeoutExpired:
            out["runs"].append({"size": s["size"], "error": "timed out"})
            continue
        log(f"speed {s['size']}", p.stdout[-5000:] + p.stderr[-8000:])
        js = [ln for ln in p.stdout.splitlines() if ln.startswith('{"baseline"')]
        if p.returncode or not js:
            out["runs"].append({"size": s["size"], "error": (p.stdout + p.stderr)[-2500:]})
            continue
        d = json.loads(js[-1])
        b, w = d["baseline"], d["whetstone"]
        out["runs"].append({**s, "baseline_tok_s": b["real_tokens_per_s"], "whetstone_tok_s": w["real_tokens_per_s"],
                            "ratio": round(w["real_tokens_per_s"] / b["real_tokens_per_s"], 2),
                            "baseline_peak_gib": b["peak_mem_gib"], "whetstone_peak_gib": w["peak_mem_gib"],
                            "baseline_mfu": mfu(b, w["params"]), "whetstone_mfu": mfu(w, w["params"]),
                            "attention": w.get("attention"), "packed": w.get("packed"), "liger": w.get("liger"),
                            "varlen_calls": w.get("varlen_calls")})
    out["ok"] = all("ratio" in r for r in out["runs"])
    return out


def table(res: dict) -> str:
    p = res["parts"]
    rows = [f"GPU acceptance ({'dry run, CPU' if res['dry'] else res['parts'].get('environment', {}).get('device')})"]
    for name, r in p.items():
        rows.append(f"  {name:12} {'ok' if r.get('ok') else 'FAILED' if not r.get('skipped') else 'skipped'}"
                    f"  ({r.get('seconds', 0)} s){'  ' + r['skipped'] if r.get('skipped') else ''}")
    env = p.get("environment", {})
    rows.append(f"  torch {env.get('torch')}  transformers {env.get('transformers')}  packed kernel "
                f"{env.get('packed_kernel')}  bf16 matmul {env.get('bf16_matmul_tflops')} TFLOP/s")
    k = p.get("kernels", {})
    if "loss_padded" in k:
        rows.append(f"  kernels: loss padded {k['loss_padded']} packed-varlen {k['loss_packed_varlen']} "
                    f"liger {k.get('loss_liger', '-')}; grad rel err varlen {k['grad_rel_err_varlen_vs_padded']} "
                    f"liger {k.get('grad_rel_err_liger_vs_plain', '-')} (bf16 noise {k['grad_rel_err_padded_vs_fp32']})")
    w = p.get("workers", {}).get("runs", {})
    if w:
        rows.append(f"  {'run':14} {'loss first>last':>18} {'peak GiB':>9} {'reserved':>9} {'estimate':>9} "
                    f"{'est/meas':>9} attention / packing / liger")
        for n, r in w.items():
            rows.append(f"  {n:14} {str(r.get('loss_first'))[:7]:>8}>{str(r.get('loss_last'))[:7]:<9} "
                        f"{r.get('peak_alloc_gib', '-'):>9} {r.get('peak_reserved_gib', '-'):>9} "
                        f"{r.get('estimate_gib', '-'):>9} {r.get('estimate_over_measured', '-'):>9} "
                        f"{r.get('attention')} / {r.get('packing')} / {r.get('liger')}"
                        f"{'' if r.get('returncode') == 0 else '  FAILED rc=' + str(r.get('returncode'))}")
    for r in p.get("speed", {}).get("runs", []):
        if "ratio" in r:
            rows.append(f"  speed {r['size']:4} bs{r['bs']}: peer {r['baseline_tok_s']} tok/s {r['baseline_peak_gib']} GiB "
                        f"MFU {r['baseline_mfu']} | whetstone {r['whetstone_tok_s']} tok/s {r['whetstone_peak_gib']} GiB "
                        f"MFU {r['whetstone_mfu']} | {r['ratio']}x")
        else:
            rows.append(f"  speed {r['size']}: {r.get('skipped') or 'FAILED'}")
    for name in ("distributed", "oom"):
        if name in p:
            rows.append(f"  {name}: {p[name].get('summary', '')}")
    rows.append(f"  goals: {GOALS}")
    return "\n".join(rows)


def orchestrate(a) -> int:
    out = Path(a.out or tempfile.mkdtemp())
    out.mkdir(parents=True, exist_ok=True)
    work = Path(a.work or tempfile.mkdtemp(prefix="whetstone-gpu-"))
    work.mkdir(parents=True, exist_ok=True)
    plan = make_plan(a.dry_run, work, a.budget_s)
    plan_file = work / "plan.json"
    plan_file.write_text(json.dumps(plan))
    log = Log(out / "gpu_acceptance.log")
    res = {"dry": a.dry_run, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "parts": {}}
    save = lambda: (out / "gpu_acceptance.json").write_text(json.dumps(res, indent=1, default=str))  # noqa: E731

    only = set(a.only.split(",")) if a.only else None
    if only and only & {"workers", "distributed", "oom"}:
        only.add("models")  # their models come from it (already-made folders in --work are reused)

    def wanted(name: str) -> bool:
        return only is None or name in only

    def part(name: str, fn, need: float):
        left = plan["deadline"] - time.time()
        if not wanted(name):
            return
        if left < need:
            res["parts"][name] = {"skipped": f"out of time ({left:.0f} s left, needs ~{need:.0f})"}
        else:
            t = time.time()
            res["parts"][name] = fn(left)
            res["parts"][name].setdefault("seconds", round(time.time() - t, 1))
        save()
        print(f"[{time.strftime('%H:%M:%S')}] {name}: {'ok' if res['parts'][name].get('ok') else 'not ok'}",
              flush=True)

    dry = a.dry_run
    part("environment", lambda left: run_part("environment", plan, plan_file, log, min(left, 120)), 10)
    part("kernels", lambda left: run_part("kernels", plan, plan_file, log, min(left, 240)), 20 if dry else 60)
    part("models", lambda left: run_part("models", plan, plan_file, log, min(left, 300)), 10 if dry else 90)
    t0, dist = time.time(), None
    if wanted("distributed") and plan["deadline"] - time.time() > (10 if dry else 120):  # beside the workers
        dist = subprocess.Popen(pytest_cmd(plan, DIST_TESTS), cwd=REPO, env=child_env(plan), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    part("workers", lambda left: run_part("workers", plan, plan_file, log, left), 20 if dry else 120)
    if wanted("distributed"):
        res["parts"]["distributed"] = finish_pytest(dist, plan, log, "distributed", t0) if dist else {
            "skipped": "out of time"}
        save()

    def oom(left):
        p = subprocess.Popen(pytest_cmd(plan, [OOM_TEST]), cwd=REPO, env=child_env(plan), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return finish_pytest(p, plan, log, "oom", time.time())
    part("oom", oom, 5 if dry else 60)
    part("speed", lambda left: speed(plan, log), 20 if dry else 120)
    res["seconds"] = round(time.time() - (plan["deadline"] - a.budget_s), 1)
    save()
    print(table(res), flush=True)
    print(f"\nfull figures: {out / 'gpu_acceptance.json'}  (log: {out / 'gpu_acceptance.log'})")
    return 0 if all(r.get("ok") for r in res["parts"].values()) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dry-run", action="store_true", help="tiny shape on CPU, one step of each part")
    ap.add_argument("--out", help="folder for gpu_acceptance.json and gpu_acceptance.log ($OUT on the GPU machine)")
    ap.add_argument("--work", help="scratch folder for models and runs (default: a new temporary folder)")
    ap.add_argument("--budget-s", type=float, default=500, help="stop starting parts after this many seconds")
    ap.add_argument("--only", help="a re-run of some parts: comma-separated names (environment, kernels, models, "
                                   "workers, distributed, oom, speed)")
    ap.add_argument("--part", help=argparse.SUPPRESS)
    ap.add_argument("--plan", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if not a.part:
        return orchestrate(a)
    plan = json.loads(Path(a.plan).read_text())
    from bench import gpu_checks, gpu_workers
    fn = {"environment": gpu_checks.environment, "kernels": gpu_checks.kernels, "models": gpu_checks.models,
          "workers": gpu_workers.workers}[a.part]
    r = fn(plan)
    (Path(plan["work"]) / f"part-{a.part}.json").write_text(json.dumps(r, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
