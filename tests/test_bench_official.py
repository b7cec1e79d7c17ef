"""The benchmarks' official files through the runner: RULER-Bench's data.jsonl (tests/data/ruler), first frames of
other sizes fitted to the model and recorded."""

import os

import pytest

from optimize_fixtures import BrightnessTeacher, tiny_pipe
from vlmteach_fast.bench import BenchConfig, load_suite, run_bench
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig
from vlmteach_fast.reasoner import LoRASpec

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.fixture(scope="module")
def pipe():
    return tiny_pipe()


def _cfg(out, **sampling):
    opt = OptimizeConfig(progress=False, lora=LoRASpec(rank=2),
                         sampling=SamplingConfig(num_frames=5, final_steps=1, **sampling))
    return BenchConfig(method="baseline", out=str(out), optimize=opt)


@pytest.fixture(scope="module")
def ruler_run(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("ruler")
    suite = load_suite(os.path.join(DATA, "ruler", "data.jsonl"))
    recs = run_bench(suite, _cfg(out, height=32, width=32), lambda: (pipe, BrightnessTeacher(), None),
                     progress=False)
    return suite, {r["instance_id"]: r for r in recs}, out


def test_ruler_official_file_runs_every_task_and_records_the_geometry(ruler_run):
    suite, recs, _ = ruler_run
    assert sorted(recs) == sorted(it.id for it in suite.items)
    maze = recs["maze/0"]  # a 48 x 32 (w x h) frame brought to 32 x 32: scaled to cover, center-cropped
    assert maze["status"] == "ok" and (maze["task"], maze["index"]) == ("maze", "0")
    assert maze["geometry"] == {"num_frames": 5, "height": 32, "width": 32, "source": [32, 48], "fit": "crop",
                                "scaled": [32, 48], "offset": [0, 8]}
    assert recs["anomaly/0"]["geometry"]["source"] == [40, 40] and recs["anomaly/0"]["status"] == "ok"
    # an item with an input video and no image cannot run on an image-to-video model: recorded, the rest ran
    assert recs["physics/0"]["status"] == "error" and "`image` is required" in recs["physics/0"]["error"]


@pytest.fixture(scope="module")
def vbvr_run(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("vbvr")
    suite = load_suite(os.path.join(DATA, "vbvr"))
    recs = run_bench(suite, _cfg(out), lambda: (pipe, BrightnessTeacher(), None), progress=False)
    return suite, {r["instance_id"]: r for r in recs}, out


def test_ruler_export_is_the_official_task_index_tree(ruler_run, tmp_path):
    from vlmteach_fast.bench.cli import main

    _, recs, out = ruler_run
    dest = tmp_path / "videos" / "my_model"  # eval.py reads {videos}/{model_name}/{task_name}/{index}.mp4
    assert main(["bench-export", "--run", str(out), "--dest", str(dest)]) == 0
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.mp4"))
    assert files == ["anomaly/0.mp4", "maze/0.mp4", "maze/1.mp4"]  # physics/0 failed: no video to export
    assert (dest / "maze" / "1.mp4").read_bytes() == (out / recs["maze/1"]["video"]).read_bytes()


def test_vbvr_export_is_the_evalkit_tree_and_folder_names_give_the_ids_back(vbvr_run, tmp_path):
    import re

    from vlmteach_fast.bench.export import export_official
    from vlmteach_fast.bench.suites import item_id_from_dir

    suite, recs, out = vbvr_run
    assert all(r["status"] == "ok" for r in recs.values()) and len(recs) == 3
    written = export_official(out, tmp_path / "model_outputs")
    rel = sorted(os.path.relpath(p, tmp_path / "model_outputs") for p in written)
    assert rel == ["In-Domain_50/G-3_stable_sort_data-generator/00000.mp4",
                   "Out-of-Domain_50/O-39_maze_data-generator/00000.mp4",
                   "Out-of-Domain_50/O-39_maze_data-generator/00001.mp4"]
    assert all(re.fullmatch(r"\d{5}\.mp4", os.path.basename(p)) for p in rel)  # what the EvalKit collects
    # every instance folder of the run names its item id reversibly
    folders = {item_id_from_dir(os.path.basename(os.path.dirname(r["video"]))) for r in recs.values()}
    assert folders == {it.id for it in suite.items}
    with pytest.raises(ValueError, match="no split"):
        export_official(out, tmp_path / "x", layout="vbvr", records=[dict(r, split="") for r in recs.values()])
