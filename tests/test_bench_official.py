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
