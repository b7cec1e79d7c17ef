"""VBVR-Pro-Bench through the bench (tests/data/vbvr_pro): its layout loads with the metadata kept, ``--scorer
vbvr-pro`` calls the evaluators as ``run_evaluation_video.py`` does, a sample without a video scores 0 and counts as
0 in the means, the records say who scored them, and the export is the tree the script reads. The evaluators are
the stand-in package in tests/fake_evalkit."""

import os
import shutil
import sys

import pytest

from vlmteach_fast.evaluate import BenchConfig, load_suite, read_all_records, run_bench
from vlmteach_fast.evaluate.summary import summarize
from vlmteach_fast.evaluate.vbvr_pro import VBVRProScorer, require_pro_bench
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig

HERE = os.path.dirname(os.path.abspath(__file__))
PRO = os.path.join(HERE, "data", "vbvr_pro")
SORT, MAZE = "G-3_stable_sort_data-generator", "O-39_maze_data-generator"


def _ours():
    return [m for m in sys.modules if m == "vbvr_pro_bench" or m.startswith("vbvr_pro_bench.")]


@pytest.fixture
def fake_pro_bench(monkeypatch):
    """The stand-in VBVR-Pro-Bench (tests/fake_evalkit) in place of any installed one, for this test only."""
    monkeypatch.delenv("VBVR_PRO_BENCH", raising=False)
    saved = {m: sys.modules.pop(m) for m in _ours()}
    path = os.path.join(HERE, "fake_evalkit")
    sys.path.insert(0, path)
    try:
        from vbvr_pro_bench import evaluators

        evaluators.CALLS.clear()
        yield evaluators
    finally:
        sys.path.remove(path)
        for m in _ours():
            del sys.modules[m]
        sys.modules.update(saved)


def _cfg(out, method, scorer):
    return BenchConfig(method=method, out=str(out), scorer=scorer,
                       optimize=OptimizeConfig(progress=False, sampling=SamplingConfig(num_frames=5)))


def test_pro_layout_loads_with_its_metadata_and_categories(fake_pro_bench):
    suite = load_suite(PRO)
    assert suite.kind == "vbvr" and not suite.errors
    by_task = {it.task: it for it in suite.items}
    assert sorted(by_task) == [SORT, MAZE]
    sort = by_task[SORT]
    assert (sort.split, sort.index, sort.category) == ("In-Domain_50", "00000", "Perception")
    assert sort.ground_truth["metadata"] == os.path.join(PRO, "In-Domain_50", SORT, "00000", "metadata.json")
    assert set(sort.ground_truth) == {"final_frame", "video", "metadata"}
    # a VBVR-Bench folder has no metadata.json: nothing is invented for it
    plain = load_suite(os.path.join(HERE, "data", "vbvr"))
    assert all("metadata" not in it.ground_truth for it in plain.items)


def test_pro_scorer_calls_the_evaluator_as_the_video_script_and_records_its_mode(fake_pro_bench, tmp_path):
    from vlmteach_fast.evaluate.export import export_official

    suite = load_suite(PRO)
    recs = run_bench(suite, _cfg(tmp_path, "static", VBVRProScorer(device="cpu")), lambda: (None, None, None),
                     progress=False)
    assert all(r["status"] == "ok" and r["score_name"] == "scorer" for r in recs)
    assert all(0.5 < r["score"] <= 1.0 for r in recs)  # the stand-in's last-frame brightness of a white frame
    prov = recs[0]["provenance"]["scorer"]
    assert prov["name"] == "VBVR-Pro-Bench" and prov["mode"].startswith("vbvr-pro (rule score only")
    assert prov["package"] == "vbvr_pro_bench"
    assert len(fake_pro_bench.CALLS) == 2
    info, kwargs, device, task = next(c for c in fake_pro_bench.CALLS if c[3] == MAZE)
    sample = os.path.join(PRO, "Out-of-Domain_50", MAZE, "00000")
    assert kwargs == {"task_specific_only": True} and device == "cpu"
    assert info["no_ssim_fallback"] is True and info["gt_path"] == sample and info["task_name"] == MAZE
    assert info["metafile_path"] == [os.path.join(sample, "metadata.json"),
                                     os.path.join("./annotations", MAZE, "00000.json")]
    assert info["gt_final_frame"] == os.path.join(sample, "final_frame.png")
    assert info["prompt"].startswith("Draw the path")
    # the tree the video script reads: {split}/{task}/{sample}.mp4
    written = export_official(tmp_path, tmp_path / "export", method="static")
    assert sorted(os.path.relpath(p, tmp_path / "export") for p in written) == [
        os.path.join("In-Domain_50", SORT, "00000.mp4"), os.path.join("Out-of-Domain_50", MAZE, "00000.mp4")]


def test_a_sample_without_a_video_scores_zero_and_counts_in_the_mean(fake_pro_bench, tmp_path):
    scorer = VBVRProScorer(device="cpu")
    item = load_suite(PRO).items[0]
    missing = scorer(item, None, video_path=str(tmp_path / "none.mp4"))
    assert missing["score"] == 0.0 and missing["parts"]["error"] == "no prediction"
    assert not fake_pro_bench.CALLS  # nothing to evaluate
    # through the runner: `ground_truth` fails on a sample whose answer video is gone, so it has no video
    suite_dir = tmp_path / "suite"
    shutil.copytree(PRO, suite_dir)
    os.remove(suite_dir / "Out-of-Domain_50" / MAZE / "00000" / "ground_truth.mp4")
    out = tmp_path / "run"
    recs = {r["task"]: r for r in run_bench(load_suite(str(suite_dir)), _cfg(out, "ground_truth", scorer),
                                              lambda: (None, None, None), progress=False)}
    assert recs[SORT]["status"] == "ok" and recs[SORT]["score"] > 0.5
    failed = recs[MAZE]
    assert failed["status"] == "error" and "ground_truth needs" in failed["error"]
    assert (failed["score"], failed["score_name"]) == (0.0, "scorer")
    (row,) = [r for r in summarize(read_all_records(out)) if r.level == "all"]
    assert row.failed == 1 and row.mean_score == pytest.approx(recs[SORT]["score"] / 2)


def test_without_vbvr_pro_bench_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.delenv("VBVR_PRO_BENCH", raising=False)
    for m in _ours():
        monkeypatch.delitem(sys.modules, m)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "fake_evalkit" not in p])
    try:
        import vbvr_pro_bench  # noqa: F401
        pytest.skip("VBVR-Pro-Bench is installed here")
    except ImportError:
        pass
    with pytest.raises(RuntimeError, match="git clone https://github.com/Video-Reason/VBVR-Pro-Bench"):
        require_pro_bench()
    # VBVR_PRO_BENCH names the clone: its folder goes on sys.path
    monkeypatch.setenv("VBVR_PRO_BENCH", os.path.join(HERE, "fake_evalkit"))
    try:
        assert require_pro_bench().get_task_category(SORT) == "Perception"
    finally:
        for m in _ours():
            del sys.modules[m]


def test_vbvr_pro_scorer_is_refused_on_a_suite_that_is_not_vbvr_style():
    from vlmteach_fast.evaluate.cli import _scorer

    ruler = load_suite(os.path.join(HERE, "data", "ruler", "data.jsonl"))
    with pytest.raises(ValueError, match="--scorer vbvr-pro scores VBVR-Pro-Bench samples; --suite is a ruler suite"):
        _scorer("vbvr-pro", ruler)
