"""What a resumed ``bench`` counts as done: a record stands for its instance only while the suite item (its fields and
the bytes of the files it names) and the models' files are what they were (``evaluate/fingerprint.py``); otherwise
the instance runs again, the reason is printed and the reports leave the old record out."""

import json
import os

import pytest

from vlmteach_fast.evaluate import BenchConfig, load_suite, read_all_records, run_bench
from vlmteach_fast.evaluate.fingerprint import SMALL_FILE, current_records, item_keys
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig
from vlmteach_fast.reasoner import LoRASpec
from vlmteach_fast.testing import BrightnessTeacher


def _cfg(out, **kw):
    opt = OptimizeConfig(progress=False, lora=LoRASpec(rank=2), sampling=SamplingConfig(num_frames=5, final_steps=1))
    return BenchConfig(method="baseline", out=str(out), optimize=opt, **kw)


def _suite(folder, prompts):
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    for k in range(len(prompts)):
        Image.new("RGB", (32, 32), (40 * k, 90, 160)).save(os.path.join(folder, f"{k}.png"))
    lines = [json.dumps({"index": str(k), "task_name": "t", "category": "c", "prompt": p,
                         "input_image_path": f"{k}.png"}) for k, p in enumerate(prompts)]
    with open(os.path.join(folder, "data.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    return os.path.join(folder, "data.jsonl")


def _run(path, cfg, pipe, ran=None):
    def load():
        if ran is not None:
            ran.append(1)
        return pipe, BrightnessTeacher(), None

    return {r["instance_id"]: r for r in run_bench(load_suite(path), cfg, load, progress=False)}


def test_an_edited_item_or_image_runs_again_with_the_reason_and_the_rest_is_kept(pipe, tmp_path, capsys):
    path = _suite(tmp_path / "s", ["make it bright", "make it dark"])
    first = _run(path, _cfg(tmp_path / "out"), pipe)
    ran = []
    assert _run(path, _cfg(tmp_path / "out"), pipe, ran) == first and ran == []  # nothing changed: nothing runs

    _suite(tmp_path / "s", ["make it bright", "make it very dark"])  # item t/1's prompt edited, same id
    capsys.readouterr()
    second = _run(path, _cfg(tmp_path / "out"), pipe)
    out = capsys.readouterr().out
    assert "1 already done, 1 to run" in out and "instance t/1: suite item changed" in out
    assert second["t/0"] == first["t/0"] and second["t/1"]["finished_at"] > first["t/1"]["finished_at"]

    from PIL import Image

    Image.new("RGB", (32, 32), (255, 0, 0)).save(tmp_path / "s" / "0.png")  # same path, other pixels
    third = _run(path, _cfg(tmp_path / "out"), pipe)
    assert "instance t/0: suite item changed" in capsys.readouterr().out
    assert third["t/0"]["item_key"] != second["t/0"]["item_key"] and third["t/1"] == second["t/1"]


def test_another_suite_of_the_same_file_name_is_not_counted_as_done(pipe, tmp_path, capsys):
    a = _suite(tmp_path / "a", ["make it bright", "make it dark"])
    b = _suite(tmp_path / "b", ["turn it red", "make it dark"])  # also data.jsonl, same ids, same config hash
    _run(a, _cfg(tmp_path / "out"), pipe)
    recs = _run(b, _cfg(tmp_path / "out"), pipe)
    assert "1 already done, 1 to run" in capsys.readouterr().out  # t/1 is the same item in both: its result stands
    assert recs["t/0"]["item_key"] == item_keys(load_suite(b).items)["t/0"]


def test_changed_weights_at_the_same_path_run_again_and_stale_records_leave_the_reports(pipe, tmp_path, capsys):
    path = _suite(tmp_path / "s", ["make it bright", "make it dark"])
    weights = tmp_path / "model"
    weights.mkdir()
    (weights / "config.json").write_text('{"layers": 2}')
    (weights / "model.safetensors").write_bytes(os.urandom(SMALL_FILE + 12345))  # above SMALL_FILE: by its time
    identity = {"pipeline": str(weights), "teacher": "toy-teacher", "judge": "none"}
    out = tmp_path / "out"
    first = _run(path, _cfg(out, identity=identity), pipe)
    assert first["t/0"]["models_key"] is not None

    (weights / "model.safetensors").write_bytes(os.urandom(SMALL_FILE + 12345))  # retrained into the same path
    capsys.readouterr()
    second = _run(path, _cfg(out, identity=identity, limit=1), pipe)
    assert "instance t/0: weights changed (--pipeline) since it was recorded" in capsys.readouterr().out
    assert second["t/0"]["models_key"] != first["t/0"]["models_key"]
    # t/1 still holds the old weights' record: the reports (and the official export) must not show it
    suite = load_suite(path)
    shown = current_records(read_all_records(out), item_keys(suite.items), out)
    assert [r["instance_id"] for r in shown] == ["t/0"]


def test_a_record_without_content_keys_is_stale(pipe, tmp_path, capsys):
    path = _suite(tmp_path / "s", ["make it bright"])
    out = tmp_path / "out"
    _run(path, _cfg(out), pipe)
    shard = out / "shards" / "records-rank0.jsonl"
    lines = [json.loads(x) for x in shard.read_text().splitlines()]
    for r in lines:
        del r["item_key"], r["models_key"]  # what a version before the content keys wrote
    shard.write_text("".join(json.dumps(r) + "\n" for r in lines))
    _run(path, _cfg(out), pipe)
    assert "instance t/0: recorded without a content key" in capsys.readouterr().out


@pytest.mark.parametrize("spec", ["none", "teacher", "not/a-cached-hub-id"])
def test_specs_with_nothing_on_disk_fingerprint_as_themselves(spec):
    from vlmteach_fast.evaluate.fingerprint import spec_fingerprint

    assert spec_fingerprint(spec, "judge") == spec


def test_the_reports_leave_out_another_methods_records_of_an_edited_item(write_jsonl_suite, tmp_path):
    """baseline ran on t/i0 and t/i1; t/i1 is edited; best_of_n runs into the same --out: the report compares the
    methods on current records only (baseline's t/i1 is of the old item)."""
    import csv

    from vlmteach_fast.evaluate.cli import main

    root = write_jsonl_suite(2, "make the video bright", "max_steps: 1\nprogress: false\nn: 2\n"
                                                          "sampling: {num_frames: 5, final_steps: 1}\n")
    out = tmp_path / "out"

    def bench(method):
        return main(["bench", "--suite", str(root / "suite.jsonl"), "--method", method, "--pipeline",
                     "py:vlmteach_fast.testing:tiny_ti2v_pipeline", "--teacher",
                     "py:vlmteach_fast.testing:BrightnessTeacher", "--config", str(root / "cfg.yaml"), "--out",
                     str(out), "--no-progress"])

    assert bench("baseline") == 0
    lines = (root / "suite.jsonl").read_text().splitlines()
    lines[1] = lines[1].replace("make the video bright", "make the video dark")
    (root / "suite.jsonl").write_text("\n".join(lines) + "\n")
    assert bench("best_of_n") == 0
    with open(out / "summary.csv") as f:
        rows = {r["method"]: r for r in csv.DictReader(f) if r["level"] == "all"}
    assert rows["best_of_n"]["instances"] == "2" and rows["baseline"]["instances"] == "1"
