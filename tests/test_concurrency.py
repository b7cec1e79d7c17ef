"""Two ``bench`` runs into the same ``--out`` share the work (a lock per instance, naming its holder) instead of
computing instances twice; two writers of one output set never delete each other's folders in flight."""

import json
import os
import subprocess
import sys
import time

import pytest

from vlmteach_fast.testing import BrightnessTeacher

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def gated_teacher():
    """BrightnessTeacher; with $BENCH_GATE set, its first reward call (inside the first instance) writes
    $BENCH_GATE/held and waits until $BENCH_GATE/go exists: the test decides when the first run goes on."""
    teacher = BrightnessTeacher()
    gate = os.environ.get("BENCH_GATE")
    if gate:
        reward = teacher.reward

        def gated(frames, queries, **kw):
            if teacher.calls == 0:
                open(os.path.join(gate, "held"), "w").close()
                while not os.path.exists(os.path.join(gate, "go")):
                    time.sleep(0.05)  # waits on a condition the test sets; nothing races on time
            return reward(frames, queries, **kw)

        teacher.reward = gated
    return teacher


@pytest.fixture
def suite(write_jsonl_suite):
    return write_jsonl_suite(4, "make it bright",
                             "progress: false\nsampling: {num_frames: 5, final_steps: 1}\nlora: {rank: 2}\n")


def _cmd(suite, out):
    return [sys.executable, "-m", "vlmteach_fast.cli", "bench", "--suite", str(suite / "suite.jsonl"), "--method",
            "baseline", "--pipeline", "py:vlmteach_fast.testing:tiny_ti2v_pipeline",
            "--teacher", "py:test_concurrency:gated_teacher",
            "--config", str(suite / "cfg.yaml"), "--out", str(out), "--no-progress"]


def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k != "BENCH_GATE"}
    env.update(PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]), **kw)
    return env


def test_two_bench_runs_into_one_out_share_the_instances(suite, tmp_path):
    out, gate = tmp_path / "out", tmp_path / "gate"
    gate.mkdir()
    first = subprocess.Popen(_cmd(suite, out), cwd=ROOT, env=_env(BENCH_GATE=str(gate)), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 180
        while not (gate / "held").exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert (gate / "held").exists(), first.communicate(timeout=5)[0][-3000:]
        # the first run is inside instance i0 (holding its lock); a second run starts on the same --out
        second = subprocess.run(_cmd(suite, out), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
        (gate / "go").touch()
        first_out, _ = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert f"t/i0 is being run by pid {first.pid} on " in second.stdout, second.stdout[-3000:] + second.stderr[-2000:]
    assert first.returncode == 0, first_out[-3000:]
    recs = [json.loads(line) for p in sorted((out / "shards").iterdir()) for line in p.read_text().splitlines()]
    assert sorted(r["instance_id"] for r in recs) == ["t/i0", "t/i1", "t/i2", "t/i3"]  # each computed once
    assert [r["instance_id"] for r in recs if r["status"] == "ok"] and all(r["status"] == "ok" for r in recs)
    merged = [json.loads(x)["instance_id"] for x in (out / "records.jsonl").read_text().splitlines()]
    assert merged == ["t/i0", "t/i1", "t/i2", "t/i3"]


def test_a_writer_never_removes_a_live_writers_temporary_folder(tmp_path):
    import socket

    from vlmteach_fast.io_atomic import commit_dir

    host = socket.gethostname()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    live_tmp = tmp_path / f".tmp-d~{host}~{os.getppid()}~abc"  # the test runner's parent: alive
    dead_tmp = tmp_path / f".tmp-d~{host}~{int(dead.stdout)}~def"
    other_host = tmp_path / f".tmp-d~elsewhere~{int(dead.stdout)}~ghi"  # cannot be checked from here
    for d in (live_tmp, dead_tmp, other_host):
        d.mkdir()
        (d / "video.mp4").write_text("in flight")
    commit_dir(lambda d: open(os.path.join(d, "result.json"), "w").write("{}"), tmp_path / "d")
    assert sorted(os.listdir(tmp_path)) == sorted(["d", live_tmp.name, other_host.name])
