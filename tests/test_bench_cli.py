"""``bench`` / ``bench-report`` command lines: bad input fails before any model loads, with a message naming it."""

import json
import os

import pytest

from vlmteach_fast.evaluate.cli import main


@pytest.fixture
def suite(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps({"index": 0, "task_name": "t", "category": "c", "prompt": "p"}) + "\n")
    return path


def _bench(suite, out, *extra):
    return ["bench", "--suite", str(suite), "--method", "baseline", "--pipeline", "py:vlmteach_fast.testing:tiny_ti2v_pipeline",
            "--teacher", "py:vlmteach_fast.testing:BrightnessTeacher", "--out", str(out), *extra]


@pytest.mark.parametrize("change,message", [
    (("--pipeline", "py:no_such_module:f"), "cannot import module 'no_such_module'"),
    (("--teacher", "py:vlmteach_fast.testing:nothing"), "has no callable 'nothing'"),
    (("--teacher", "py:vlmteach_fast.testing"), "expected py:MODULE:CALLABLE"),
    (("--pipeline", "./no/such/dir"), "--pipeline directory not found"),
    (("--judge", "./no/judge"), "--judge directory not found"),
    (("--suite", "/no/suite.jsonl"), "--suite not found"),
    (("--query-metrics", "Rule Coherence,Colour"), "unknown metric(s) ['Colour']"),
    (("--limit", "0"), "`limit` must be an int >= 1 or None"),
    (("--scorer", "py:vlmteach_fast.testing:no_scorer"), "--scorer 'py:vlmteach_fast.testing:no_scorer'"),
    (("--device", "gpu"), "--device 'gpu' is not a device; allowed: cpu, cuda, cuda:N"),
])
def test_bad_arguments_fail_before_models_load(suite, tmp_path, change, message):
    args = _bench(suite, tmp_path / "out")
    if change[0] in args:
        args[args.index(change[0]) + 1] = change[1]
    else:
        args += list(change)
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert message in str(exc.value)
    assert not (tmp_path / "out" / "shards").exists()  # nothing ran


def test_pipeline_is_required_outside_the_toy_suite(suite, tmp_path):
    args = _bench(suite, tmp_path / "out")
    i = args.index("--pipeline")
    del args[i: i + 2]
    with pytest.raises(SystemExit, match="--pipeline is required"):
        main(args)


def test_output_folder_that_is_a_file_is_rejected_and_left_alone(suite, tmp_path):
    out = tmp_path / "taken"
    out.write_text("precious")
    with pytest.raises(SystemExit, match="exists and is not a directory"):
        main(_bench(suite, out))
    assert out.read_text() == "precious"


def test_unwritable_output_folder_is_rejected(suite, tmp_path, monkeypatch):
    import tempfile

    def read_only(*a, **kw):  # a read-only mount (chmod does not stop root, who runs CI here)
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", read_only)
    with pytest.raises(SystemExit, match="is not writable \\(Read-only file system\\)"):
        main(_bench(suite, tmp_path / "ro"))


def test_toy_suite_without_shipped_models_says_what_is_missing(tmp_path, monkeypatch):
    from vlmteach_fast.toy import models

    # an install whose weights folder is missing (a trimmed wheel, a deleted file): the shipped one is hidden
    monkeypatch.setattr(models, "PIPELINE_DIR", str(tmp_path / "no_weights" / "video"))
    with pytest.raises(SystemExit, match="--pipeline toy: the built-in toy model is not shipped yet"):
        main(["bench", "--suite", "toy:2", "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o" / "shards").exists()  # failed before anything ran
    monkeypatch.setattr(models, "PIPELINE_DIR", os.path.join(models.WEIGHTS_DIR, "video"))
    monkeypatch.setattr(models, "TEACHER_DIR", str(tmp_path / "no_weights" / "teacher"))
    with pytest.raises(SystemExit, match="--teacher toy: the built-in toy model is not shipped yet"):
        main(["bench", "--suite", "toy:2", "--out", str(tmp_path / "o")])


def test_bench_report_writes_markdown_and_rejects_bad_json(tmp_path, capsys):
    data = {"machine_info": {}, "benchmarks": [
        {"name": "test_x[a]", "group": "g", "extra_info": {"provider": "a"},
         "stats": {"median": 0.002, "mean": 0.002, "stddev": 0.0, "rounds": 5}}]}
    (tmp_path / "b.json").write_text(json.dumps(data))
    assert main(["bench-report", str(tmp_path / "b.json"), "--out", str(tmp_path / "R.md")]) == 0
    md = (tmp_path / "R.md").read_text()
    assert "## g" in md and "| test_x[a] | a | 2.000 |" in md
    assert "versions of the machine that made this report" in md  # the JSON did not record them
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(SystemExit, match=r"bad\.json:1: not valid JSON"):
        main(["bench-report", str(tmp_path / "bad.json")])
    data["benchmarks"][0].pop("stats")  # valid JSON, not what pytest-benchmark writes
    (tmp_path / "nostats.json").write_text(json.dumps(data))
    with pytest.raises(SystemExit, match=r"nostats\.json: benchmark 'test_x\[a\]' lacks stats \['median'"):
        main(["bench-report", str(tmp_path / "nostats.json")])


def test_conftest_hook_records_versions_in_the_benchmark_json(tmp_path):
    import subprocess
    import sys

    (tmp_path / "conftest.py").write_text(
        "from vlmteach_fast.evaluate.throughput import pytest_benchmark_update_machine_info  # noqa: F401\n")
    (tmp_path / "test_b.py").write_text(
        "def test_b(benchmark):\n"
        "    benchmark.group = 'g'\n"
        "    benchmark.extra_info['provider'] = 'p'\n"
        "    benchmark.pedantic(sum, args=([1, 2],), rounds=2)\n")
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-only",
                          "--benchmark-json=out.json", "test_b.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]
    import torch

    env = json.loads((tmp_path / "out.json").read_text())["machine_info"]["vlmteach_fast"]
    assert env["torch"] == torch.__version__ and "backends" in env
    assert main(["bench-report", str(tmp_path / "out.json"), "--out", str(tmp_path / "R.md")]) == 0
    md = (tmp_path / "R.md").read_text()
    assert f"torch {torch.__version__}" in md and "not recorded in the JSON" not in md


def test_allow_outside_paths_reaches_the_suite_loader(tmp_path):
    import argparse

    from PIL import Image

    from vlmteach_fast.evaluate.cli import _prepare, add_bench_parsers

    (tmp_path / "data").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "frame.png")
    suite = tmp_path / "data" / "s.jsonl"
    suite.write_text(json.dumps({"index": 0, "task_name": "t", "category": "c", "prompt": "p",
                                 "input_image_path": "../frame.png"}) + "\n")
    parser = argparse.ArgumentParser()
    add_bench_parsers(parser.add_subparsers())
    refused, _ = _prepare(parser.parse_args(_bench(suite, tmp_path / "out")))
    assert not refused.items and "leads outside the suite's folder" in refused.errors[0].message
    allowed, _ = _prepare(parser.parse_args(_bench(suite, tmp_path / "out", "--allow-outside-paths")))
    assert [it.image for it in allowed.items] == [str(tmp_path / "frame.png")] and not allowed.errors


def test_limit_reads_a_jsonl_suite_only_that_far(tmp_path):
    import argparse

    from vlmteach_fast.evaluate.cli import _prepare, add_bench_parsers

    suite = tmp_path / "s.jsonl"
    good = [json.dumps({"index": k, "task_name": "t", "category": "c", "prompt": "p"}) for k in range(2)]
    suite.write_text("\n".join(good + ["{not json"] * 3) + "\n")  # stands for the rest of a huge file
    parser = argparse.ArgumentParser()
    add_bench_parsers(parser.add_subparsers())
    whole, _ = _prepare(parser.parse_args(_bench(suite, tmp_path / "out")))
    assert len(whole.items) == 2 and len(whole.errors) == 3
    first, _ = _prepare(parser.parse_args(_bench(suite, tmp_path / "out", "--limit", "1")))
    assert [it.id for it in first.items] == ["t/0"] and not first.errors  # the lines after it were never parsed
