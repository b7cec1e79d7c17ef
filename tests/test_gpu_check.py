"""bench/gpu_check.sh --dry-run end to end on the CPU (so the GPU check cannot rot): every step runs and reports.

~2 minutes on a 2-core machine (six Python processes; the model code itself takes seconds).
"""

import json
import os
import subprocess
import sys

import pytest

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
    assert sorted(summary["steps"], key=int) == ["1", "2", "3", "4", "5", "6"]
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
