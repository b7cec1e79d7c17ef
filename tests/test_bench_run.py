"""The bench runner end to end with the tiny Wan pipeline and BrightnessTeacher: failures recorded and the run goes
on, resume, ``kill -9`` mid-instance then re-run (one record per instance), and a 2-process accelerate run giving the
same records as 1 process.

The subprocesses run ``python -m vlmteach_fast.evaluate.cli bench`` (the same parser ``vlmteach-fast bench`` uses) with
``--pipeline py:vlmteach_fast.testing:tiny_ti2v_pipeline --teacher py:test_bench_run:hanging_teacher``.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from vlmteach_fast.config_io import load_config
from vlmteach_fast.evaluate import BenchConfig, load_suite, read_all_records, run_bench
from vlmteach_fast.testing import BrightnessTeacher

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CONFIG = ("max_steps: 2\nlr: 0.01\nprogress: false\nsampling: {num_frames: 5, final_steps: 1}\n"
          "lora: {rank: 2}\ndecoder: {kind: full}\n")


def hanging_teacher():
    """BrightnessTeacher; with $BENCH_HANG_MARKER set it writes that file and hangs in its 2nd reward call, i.e. in
    the middle of the 2nd instance (baseline: one reward call per instance), for the test to kill it there."""
    teacher = BrightnessTeacher()
    marker = os.environ.get("BENCH_HANG_MARKER")
    if marker:
        reward = teacher.reward

        def hang_on_second(frames, queries, **kw):
            if teacher.calls == 1:
                with open(marker, "w") as f:
                    f.write("in instance 2\n")
                time.sleep(600)
            return reward(frames, queries, **kw)

        teacher.reward = hang_on_second
    return teacher


@pytest.fixture(scope="module")
def suite_dir(tmp_path_factory):
    import torch
    from PIL import Image

    root = tmp_path_factory.mktemp("suite")
    g = torch.Generator().manual_seed(0)
    for k in range(4):
        arr = (torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()
        Image.fromarray(arr).save(root / f"f{k}.png")
    (root / "broken.png").write_bytes(b"not a png at all")
    lines = [json.dumps({"index": f"i{k}", "task_name": f"t{k % 2}", "category": "AB"[k // 2],
                         "prompt": "make the video bright", "input_image_path": f"f{k}.png",
                         "checklist": [{"Rule Coherence": "Is the last frame bright?"},
                                       {"Visual Fidelity": "Is the video sharp?"}]}) for k in range(4)]
    lines.insert(2, json.dumps({"index": "bad", "task_name": "t0", "category": "A", "prompt": "p",
                                "input_image_path": "broken.png"}))
    lines.append('{"index": "torn", "task_name": ')  # malformed: reported with file:line, the rest runs
    (root / "suite.jsonl").write_text("\n".join(lines) + "\n")
    (root / "cfg.yaml").write_text(CONFIG)
    return root



def _cmd(suite_dir, out, *extra):
    return ["-m", "vlmteach_fast.evaluate.cli", "bench", "--suite", str(suite_dir / "suite.jsonl"), "--method",
            "baseline", "--pipeline", "py:vlmteach_fast.testing:tiny_ti2v_pipeline",
            "--teacher", "py:test_bench_run:hanging_teacher",
            "--config", str(suite_dir / "cfg.yaml"), "--out", str(out), "--no-progress", *extra]


def _env(**kw):
    env = {k: v for k, v in os.environ.items() if k != "BENCH_HANG_MARKER"}
    env.update(PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]), **kw)
    return env


def _raw_lines(out):
    shards = os.path.join(out, "shards")
    return [json.loads(line) for name in sorted(os.listdir(shards))
            for line in open(os.path.join(shards, name)) if line.strip()]


def test_failures_are_recorded_runs_resume_and_reports_cover_every_method(suite_dir, tmp_path, pipe):
    suite = load_suite(str(suite_dir / "suite.jsonl"))
    assert [it.id for it in suite.items] == ["t0/i0", "t1/i1", "t0/bad", "t0/i2", "t1/i3"] and len(suite.errors) == 1
    assert suite.errors[0].where.endswith("suite.jsonl:6")
    config, options = load_config(str(suite_dir / "cfg.yaml"))
    teacher = BrightnessTeacher()
    out = str(tmp_path / "run")
    cfg = BenchConfig(method="baseline", out=out, optimize=config, options=options)
    recs = {r["instance_id"]: r for r in run_bench(suite, cfg, lambda: (pipe, teacher, None), progress=False)}
    assert sorted(recs) == ["t0/bad", "t0/i0", "t0/i2", "t1/i1", "t1/i3"]
    assert recs["t0/bad"]["status"] == "error" and "could not be read as an image" in recs["t0/bad"]["error"]
    good = recs["t0/i0"]
    assert good["status"] == "ok" and good["score_name"] == "teacher" and good["cost"]["denoiser_forward"] == 1
    assert 0 < good["score"] < 1 and good["score"] == pytest.approx(good["teacher_p_yes"][0])
    assert os.path.isfile(os.path.join(out, good["video"])) and good["adapter"] is None
    with open(os.path.join(out, "configs", f"{good['config_hash']}.json")) as f:
        settings = json.load(f)  # what the hash stands for
    assert settings["method"] == "baseline" and settings["optimize"]["lora"]["rank"] == 2

    def no_models():
        raise AssertionError("nothing is pending: models must not load")

    assert len(run_bench(suite, cfg, no_models, progress=False)) == 5  # resume: nothing to do
    # --retry-failed re-runs only the failed instance
    calls = []
    retry = BenchConfig(method="baseline", out=out, optimize=config, options=options, retry_failed=True)
    recs2 = run_bench(suite, retry, lambda: calls.append(1) or (pipe, teacher, None), progress=False)
    assert calls == [1] and [r["instance_id"] for r in _raw_lines(out)].count("t0/bad") == 2
    assert {r["instance_id"]: r["finished_at"] for r in recs2 if r["instance_id"] != "t0/bad"} == \
        {k: r["finished_at"] for k, r in recs.items() if k != "t0/bad"}

    # optimize into the same folder: adapter saved atomically beside the video; the report has both methods
    opt = BenchConfig(method="optimize", out=out, optimize=config, options=options, limit=1)
    (o0,) = run_bench(suite, opt, lambda: (pipe, teacher, None), progress=False)
    assert o0["stop_reason"] is not None and o0["cost"]["denoiser_backward"] >= 1
    assert os.path.isfile(os.path.join(out, o0["adapter"], "pytorch_lora_weights.safetensors"))
    from vlmteach_fast.evaluate.summary import summarize

    rows = {(r.method, r.level): r for r in summarize(read_all_records(out))}
    assert rows[("optimize", "all")].instances == 1
    assert rows[("optimize", "all")].gain_over_baseline == pytest.approx(o0["score"] - recs["t0/i0"]["score"])
    assert rows[("baseline", "all")].failed == 1


def test_vbvr_and_toy_suites_run_with_their_own_scorers(tmp_path, pipe):
    from PIL import Image

    from vlmteach_fast.instance import SamplingConfig
    from vlmteach_fast.optimization import OptimizeConfig

    d = tmp_path / "vbvr" / "test" / "maze" / "000"
    d.mkdir(parents=True)
    Image.new("RGB", (32, 32), (30, 30, 30)).save(d / "first_frame.png")
    Image.new("RGB", (32, 32), (250, 250, 250)).save(d / "final_frame.png")
    (d / "prompt.txt").write_text("light up the maze")
    from vlmteach_fast.reasoner import LoRASpec

    cfg = OptimizeConfig(progress=False, lora=LoRASpec(rank=2), sampling=SamplingConfig(num_frames=9, final_steps=1))
    base = dict(method="baseline", optimize=cfg)  # rank 2 as in CONFIG: the shared pipe already has that LoRA
    def last_frame_bright(item, frames):  # a stand-in for a VBVR rule scorer
        return {"score": float(frames[0, -1].mean()), "passed": bool(frames[0, -1].mean() > 0.9)}

    (v,) = run_bench(load_suite(str(tmp_path / "vbvr")),
                     BenchConfig(out=str(tmp_path / "o1"), scorer=last_frame_bright, **base),
                     lambda: (pipe, BrightnessTeacher(), None), progress=False)
    assert v["status"] == "ok" and v["score_name"] == "scorer" and v["passed"] is False
    assert v["score"] == pytest.approx(v["scores"]["scorer"]) and 0 <= v["scores"]["final_frame_match"] <= 1
    assert (v["split"], v["task"]) == ("test", "maze") and os.path.isfile(tmp_path / "o1" / v["video"])
    pytest.importorskip("vlmteach_fast.toy")
    toy = run_bench(load_suite("toy:2"), BenchConfig(out=str(tmp_path / "o2"), **base),
                    lambda: (pipe, BrightnessTeacher(), None), progress=False)
    assert [r["score_name"] for r in toy] == ["rule", "rule"] and all(r["status"] == "ok" for r in toy)
    assert all(set(r["scores"]["rule_parts"]) and isinstance(r["passed"], bool) for r in toy)


@pytest.fixture(scope="module")
def one_process_run(suite_dir, tmp_path_factory):
    """A CLI run killed with SIGKILL in the middle of its 2nd instance, then re-run to the end."""
    out = tmp_path_factory.mktemp("killed") / "out"
    marker = out.parent / "hanging"
    proc = subprocess.Popen([sys.executable, *_cmd(suite_dir, out)], cwd=ROOT, env=_env(BENCH_HANG_MARKER=str(marker)),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), proc.communicate(timeout=5)[0].decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    before = _raw_lines(out)
    done = subprocess.run([sys.executable, *_cmd(suite_dir, out)], cwd=ROOT, env=_env(), capture_output=True,
                          text=True, timeout=300)
    return out, before, done


def test_kill_minus_9_then_rerun_gives_one_record_per_instance(one_process_run):
    out, before, done = one_process_run
    assert [r["instance_id"] for r in before] == ["t0/i0"]  # the killed instance left no record
    assert done.returncode == 1, done.stdout + done.stderr  # 1: an instance failed and a suite line was bad
    assert "suite.jsonl:6: not valid JSON" in done.stderr
    assert "4 already done" not in done.stdout and "1 already done, 4 to run" in done.stdout
    raw = _raw_lines(out)
    assert sorted(r["instance_id"] for r in raw) == ["t0/bad", "t0/i0", "t0/i2", "t1/i1", "t1/i3"]  # exactly one each
    assert raw[0] == before[0]  # the record written before the kill is untouched
    merged = [json.loads(x) for x in open(out / "records.jsonl")]
    assert [r["instance_id"] for r in merged] == ["t0/i0", "t1/i1", "t0/bad", "t0/i2", "t1/i3"]  # suite order
    assert not [d for d in os.listdir(next((out / "instances").iterdir())) if d.startswith(".tmp")]
    for name in ("summary.md", "summary.csv", "index.html", "score_vs_seconds.png", "categories.png"):
        assert (out / name).is_file()
    # the finished videos also sit in RULER-Bench's official {task_name}/{index}.mp4 layout
    official = sorted(str(p.relative_to(out / "official" / "baseline")) for p in (out / "official").rglob("*.mp4"))
    assert official == ["t0/i0.mp4", "t0/i2.mp4", "t1/i1.mp4", "t1/i3.mp4"]


def test_two_accelerate_processes_give_the_same_records_as_one(one_process_run, suite_dir, tmp_path):
    out1 = one_process_run[0]
    out2 = tmp_path / "two"
    import socket

    with socket.socket() as s:  # a free port: other people's test runs share this machine
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # accelerate's --cpu launcher starts one process; --multi_gpu (torchrun) with PartialState(cpu=True) forms a CPU
    # (gloo) group of 2, which is what shard.process_state does without CUDA
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port",
              str(port)]
    run = subprocess.run(launch + _cmd(suite_dir, out2, "--device", "cpu"), cwd=ROOT, env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert "on 2 process(es)" in run.stdout
    assert sorted(os.listdir(out2 / "shards")) == ["records-rank0.jsonl", "records-rank1.jsonl"]
    one = {r["instance_id"]: r for r in read_all_records(out1)}
    two = {r["instance_id"]: r for r in read_all_records(out2)}
    assert sorted(one) == sorted(two) and len(_raw_lines(out2)) == 5
    assert {r["rank"] for r in two.values()} == {0, 1}
    for iid, a in one.items():
        b = two[iid]
        for key in ("status", "task", "category", "method", "config_hash", "score_name", "passed"):
            assert a[key] == b[key], (iid, key)
        if a["status"] == "ok":
            assert b["score"] == pytest.approx(a["score"], abs=1e-5)
            assert b["teacher_p_yes"] == pytest.approx(a["teacher_p_yes"], abs=1e-5)
    merged = [json.loads(x)["instance_id"] for x in open(out2 / "records.jsonl")]
    assert merged == ["t0/i0", "t1/i1", "t0/bad", "t0/i2", "t1/i3"]
