"""Ctrl-C and SIGTERM (a real SIGINT / SIGTERM, sent by the process to itself at a known call through
``signal_hook.py``) in ``bench`` and ``demo``: the run stops with exit code 130 / 143, what finished is kept and
reported, what was cut is not recorded."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
HOOK = os.path.join(HERE, "signal_hook.py")
CONFIG = ("max_steps: 2\npatience: 4\nlr: 0.01\nprogress: false\nsampling: {num_frames: 5, final_steps: 1}\n"
          "lora: {rank: 2}\ndecoder: {kind: full}\n")


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))


def run_cli(args, hook=None, timeout=300):
    """``vlmteach-fast ARGS`` in a subprocess; ``hook=(target, call, signal)`` sends the signal at that call."""
    cmd = [sys.executable, HOOK, *map(str, hook), "--", *args] if hook else \
        [sys.executable, "-m", "vlmteach_fast.cli", *args]
    return subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def suite(write_jsonl_suite):
    return write_jsonl_suite(3, "make the video bright", CONFIG)


def _bench(suite, out):
    return ["bench", "--suite", str(suite / "suite.jsonl"), "--method", "optimize", "--pipeline",
            "py:vlmteach_fast.testing:tiny_ti2v_pipeline", "--teacher", "py:vlmteach_fast.testing:BrightnessTeacher",
            "--config", str(suite / "cfg.yaml"), "--out", str(out), "--no-progress"]


def _shard_records(out):
    shards = out / "shards"
    return [json.loads(line) for p in sorted(shards.iterdir()) for line in p.read_text().splitlines() if line.strip()]


def test_ctrl_c_in_bench_stops_with_130_keeps_finished_and_does_not_record_the_cut_instance(suite, tmp_path):
    _check_bench_stopped_by(suite, tmp_path, "INT", 130, "Ctrl-C")


def test_sigterm_in_bench_stops_with_143_keeps_finished_and_does_not_record_the_cut_instance(suite, tmp_path):
    _check_bench_stopped_by(suite, tmp_path, "TERM", 143, "SIGTERM")


def _check_bench_stopped_by(suite, tmp_path, sig, code, name):
    out = tmp_path / "out"
    # Reasoner.predict runs once per optimization step (max_steps 2, no early stop with this teacher): its 3rd call
    # is the first step of the 2nd instance. SIGTERM (timeout, scancel, docker stop) is handled as Ctrl-C.
    run = run_cli(_bench(suite, out), hook=("vlmteach_fast.reasoner.reasoner:Reasoner.predict", 3, sig))
    assert f"signal_hook: sending SIG{sig}" in run.stderr
    assert run.returncode == code, run.stdout[-2000:] + run.stderr[-3000:]
    assert f"interrupted ({name})" in run.stderr and "re-run the same command to resume" in run.stderr
    recs = _shard_records(out)
    assert [(r["instance_id"], r["status"], r["stop_reason"]) for r in recs] == [("t/i0", "ok", "max_steps")]
    assert (out / "summary.md").is_file() and (out / "records.jsonl").is_file()  # reports of what finished
    assert [json.loads(x)["instance_id"] for x in (out / "records.jsonl").read_text().splitlines()] == ["t/i0"]
    instances = next((out / "instances").iterdir())
    assert len(os.listdir(instances)) == 1 and "i0" in os.listdir(instances)[0]  # nothing of the cut instance

    resumed = run_cli(_bench(suite, out))
    assert resumed.returncode == 0, resumed.stdout[-2000:] + resumed.stderr[-2000:]
    assert "1 already done, 2 to run" in resumed.stdout
    assert sorted(r["instance_id"] for r in _shard_records(out)) == ["t/i0", "t/i1", "t/i2"]  # one record each


def test_ctrl_c_in_demo_writes_results_and_page_for_the_finished_instances(tmp_path):
    pytest.importorskip("vlmteach_fast.toy")
    out = tmp_path / "demo"
    # best_of_n runs once per instance: its 2nd call is inside the 2nd instance (after plain, before optimize)
    run = run_cli(["demo", "--instances", "2", "--out", str(out)], hook=("vlmteach_fast.baselines:best_of_n", 2, "INT"))
    assert run.returncode == 130, run.stdout[-2000:] + run.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["interrupted"] is True
    assert {r["instance"] for r in results["rows"]} == {0}  # the cut instance left no partial rows
    assert sorted(r["method"] for r in results["rows"]) == ["best_of_5", "optimize", "plain"]
    assert set(results["summary"]) == {"plain", "best_of_5", "optimize"}
    page = (out / "index.html").read_text()
    assert "instance_000.gif" in page and "instance_001" not in page
    assert (out / "instance_000.gif").is_file()
