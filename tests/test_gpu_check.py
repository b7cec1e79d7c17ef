"""bench/gpu_check.sh --dry-run end to end on the CPU (so the GPU check cannot rot): every step runs and reports.

~2 minutes on a 2-core machine (six Python processes; the model code itself takes seconds).
"""

import json
import os
import subprocess
import sys

import pytest
from bench_scripts import bench_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEP4_PHASES = ("predict", "light_decode", "reward_fwd", "reward_bwd", "denoiser_bwd", "optimizer")
CANDIDATE_PHASES = ("sample_4step", "full_decode", "reward_score")


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    out = tmp_path / "gpu"
    env = dict(os.environ, PYTHON=sys.executable, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    proc = subprocess.run(["bash", os.path.join(ROOT, "bench", "gpu_check.sh"), "--dry-run", "--out", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert "dry run: skipped installing a CUDA build of torch" in (out / "step1.log").read_text()

    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert sorted(summary["steps"], key=int) == ["1", "2", "3", "4", "5", "6", "7"]
    assert {s["status"] for s in summary["steps"].values()} == {"ok"}, summary["steps"]
    md = (out / "summary.md").read_text()
    for n in range(1, 7):
        assert f"## Step {n}" in md

    assert summary["steps"]["2"]["pytest"]["errors"] == 0
    rows = summary["steps"]["3"]["rows"]
    assert {r["rank"] for r in rows} == {16, 64}
    assert all(r.get("fused_ms") and r.get("peft_ms") and r.get("base_ms") for r in rows)

    runs4 = summary["steps"]["4"]["runs"]
    runs5 = summary["steps"]["5"]["runs"]
    assert [(r["geometry_name"], r["variant"]) for r in runs4] == [("480p49", "one_step"), ("704p121", "one_step")]
    assert [r["variant"] for r in runs5] == ["block_checkpointing", "k_step2"]
    for r in runs4 + runs5:
        assert "error" not in r, r
        assert all(r["step"]["seconds"][p] > 0 for p in STEP4_PHASES)
        assert all(r["candidate"]["seconds"][p] > 0 for p in CANDIDATE_PHASES)
        assert r["target_step_le_third_candidate"] is None  # dry runs judge no target

    backends = {b["backend"]: b for b in summary["steps"]["6"]["backends"]}
    assert backends["native"]["status"] == "ok" and backends["native"]["fwd_bwd_seconds"] > 0
    for name in ("xformers", "flash"):
        assert backends[name]["status"] in ("ok", "unavailable", "failed")
        if backends[name]["status"] != "ok":
            assert backends[name]["reason"]


def _clock(phases, seconds, peak=1):
    return {"seconds": {p: seconds / len(phases) for p in phases}, "peak_bytes": {p: peak for p in phases}}


def test_step_budget_arithmetic():
    gpu_step = bench_module("gpu_step")
    cand = _clock(CANDIDATE_PHASES, 4.0)
    # optimize(budget="best_of_n:5"): 5 candidates = plain sample + steps + final sample -> floor(3 * 4 / 1) = 12
    out = gpu_step.derive(_clock(STEP4_PHASES, 1.0), cand, cuda=True)
    assert out["steps_best_of_5_budget"] == 12 and out["steps_within_best_of_5_plus_final"] == 16
    # its second cap, denoiser forward-equivalents: one-step = 1 + 2 (backward) = 3, a 4-step candidate = 4
    capped = gpu_step.derive(_clock(STEP4_PHASES, 1.0), cand, cuda=True, step_equiv=3.0, candidate_equiv=4.0)
    assert capped["steps_best_of_5_evals_cap"] == 4 and capped["steps_best_of_5_budget"] == 4
    assert out["target_16_steps_plus_final_le_best_of_5"] is True  # 16 * 1 + 4 <= 20
    assert out["target_step_le_third_candidate"] is True  # 1 <= 4 / 3
    slow = gpu_step.derive(_clock(STEP4_PHASES, 1.5), cand, cuda=True)
    assert slow["target_16_steps_plus_final_le_best_of_5"] is False and slow["target_step_le_third_candidate"] is False
    big = gpu_step.derive(_clock(STEP4_PHASES, 1.0, peak=81 * 10**9), cand, cuda=True)
    assert big["target_fits_80GB"] is False and out["target_fits_80GB"] is True
    unjudged = gpu_step.derive(_clock(STEP4_PHASES, 1.0), cand, cuda=False, judge=False)
    assert {unjudged[k] for k in unjudged if k.startswith("target_")} == {None}


def test_lora_work_counts():
    bench_lora = bench_module("bench_lora")
    t, f, r = 8, 6, 2
    flops, nbytes = bench_lora.work("base", "fwd", t, f, r, 2)
    assert flops == 2 * t * f * f and nbytes == (t * f + f * f + t * f) * 2
    lora_fwd, _ = bench_lora.work("fused", "fwd", t, f, r, 2)
    assert lora_fwd == flops + 2 * t * r * (f + f)
    full, _ = bench_lora.work("peft", "full", t, f, r, 2)
    assert full == lora_fwd + 2 * t * f * f + 4 * t * r * (f + f)
