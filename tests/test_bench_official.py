"""The benchmarks' official files through the runner: RULER-Bench's data.jsonl (tests/data/ruler), first frames of
other sizes fitted to the model and recorded."""

import json
import os

import pytest

from vlmteach_fast.testing import BrightnessTeacher, tiny_ti2v_pipeline as tiny_pipe
from vlmteach_fast.evaluate import BenchConfig, load_suite, run_bench
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
    with open(os.path.join(ruler_run[2], os.path.dirname(maze["video"]), "result.json")) as f:
        assert json.load(f)["geometry"] == maze["geometry"]  # the instance's own result says it too
    # an item with an input video and no image cannot run on an image-to-video model: recorded, the rest ran
    assert recs["physics/0"]["status"] == "error" and "`image` is required" in recs["physics/0"]["error"]


@pytest.fixture(scope="module")
def vbvr_run(pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("vbvr")
    suite = load_suite(os.path.join(DATA, "vbvr"))
    recs = run_bench(suite, _cfg(out), lambda: (pipe, BrightnessTeacher(), None), progress=False)
    return suite, {r["instance_id"]: r for r in recs}, out


def test_ruler_export_is_the_official_task_index_tree(ruler_run, tmp_path):
    from vlmteach_fast.evaluate.cli import main

    _, recs, out = ruler_run
    dest = tmp_path / "videos" / "my_model"  # eval.py reads {videos}/{model_name}/{task_name}/{index}.mp4
    assert main(["bench-export", "--run", str(out), "--dest", str(dest)]) == 0
    files = sorted(str(p.relative_to(dest)) for p in dest.rglob("*.mp4"))
    assert files == ["anomaly/0.mp4", "maze/0.mp4", "maze/1.mp4"]  # physics/0 failed: no video to export
    assert (dest / "maze" / "1.mp4").read_bytes() == (out / recs["maze/1"]["video"]).read_bytes()


def test_vbvr_export_is_the_evalkit_tree_and_folder_names_give_the_ids_back(vbvr_run, tmp_path):
    import re

    from vlmteach_fast.evaluate.export import export_official
    from vlmteach_fast.evaluate.suites import item_id_from_dir

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


def test_vbvr_scorer_without_the_evalkit_says_how_to_install_it(monkeypatch):
    import sys

    from vlmteach_fast.evaluate.cli import _scorer

    monkeypatch.setitem(sys.modules, "vbvr_bench", None)  # import fails as when it is not installed
    vbvr = load_suite(os.path.join(DATA, "vbvr"))
    with pytest.raises(RuntimeError, match=r"git clone https://github.com/Video-Reason/VBVR-EvalKit && pip install"):
        _scorer("vbvr", vbvr)
    with pytest.raises(ValueError, match="scores VBVR-Bench samples"):
        _scorer("vbvr", load_suite(os.path.join(DATA, "ruler", "data.jsonl")))


def test_vbvr_scorer_feeds_each_entry_point_its_own_eval_info(fake_evalkit, pipe, tmp_path):
    from vlmteach_fast.evaluate.vbvr import VBVRScorer

    suite = load_suite(os.path.join(DATA, "vbvr"))
    assert {it.task: it.category for it in suite.items} == {"G-3_stable_sort_data-generator": "Perception",
                                                            "O-39_maze_data-generator": "Spatiality"}
    for name, kwargs, factor in (("vbvr", {"task_specific_only": True}, 1.0), ("vbvr:weighted", {}, 0.5)):
        fake_evalkit.CALLS.clear()
        cfg = _cfg(tmp_path / name.replace(":", "_"))
        cfg.scorer = VBVRScorer(name, device="cpu")
        recs = run_bench(suite, cfg, lambda: (pipe, BrightnessTeacher(), None), progress=False)
        assert [r["score_name"] for r in recs] == ["scorer"] * 3
        assert len(fake_evalkit.CALLS) == 3 and all(c[1] == kwargs and c[2] == "cpu" for c in fake_evalkit.CALLS)
        for (info, _, _, task), rec, item in zip(fake_evalkit.CALLS, recs, suite.items):
            assert task == item.task and info["video_path"] == os.path.join(cfg.out, rec["video"])
            assert info["gt_first_frame"] == item.image and info["gt_final_frame"].endswith("final_frame.png")
            assert info["gt_video_path"].endswith("ground_truth.mp4")
            frames = __import__("imageio.v2", fromlist=["x"]).mimread(info["video_path"])
            assert rec["score"] == pytest.approx(factor * frames[-1].mean() / 255.0)
        if name == "vbvr":  # run_evaluation.py's eval_info
            assert all(c[0]["no_ssim_fallback"] is True and "gt_path" not in c[0] for c in fake_evalkit.CALLS)
        else:  # evaluate.py's (VBVRBench.build_evaluation_info)
            info = fake_evalkit.CALLS[1][0]
            assert (info["split"], info["file_split"], info["video_idx"]) == ("Out_of_Domain", "Out-of-Domain_50",
                                                                                "00000")
            assert info["prompt_path"] == os.path.join(info["gt_path"], "prompt.txt")


def test_failing_evaluator_scores_zero_and_a_raising_scorer_keeps_the_video(fake_evalkit, pipe, tmp_path):
    from vlmteach_fast.evaluate.vbvr import VBVRScorer

    suite = load_suite(os.path.join(DATA, "vbvr"))
    item = suite.items[0]
    item.prompt = "unreadable " + item.prompt  # the stand-in evaluator fails on this one, as real ones can
    cfg = _cfg(tmp_path / "a")
    cfg.scorer = VBVRScorer("vbvr", device="cpu")
    (rec,) = run_bench(type(suite)(suite.name, [item], [], "vbvr"), cfg,
                       lambda: (pipe, BrightnessTeacher(), None), progress=False)
    assert rec["status"] == "ok" and rec["score"] == 0.0  # the official scripts count it as 0
    assert rec["scores"]["scorer_parts"]["error"] == "cannot read video"

    def broken(item, frames):
        raise RuntimeError("scorer crashed")

    cfg = _cfg(tmp_path / "b")
    cfg.scorer = broken
    (rec,) = run_bench(type(suite)(suite.name, [item], [], "vbvr"), cfg,
                       lambda: (pipe, BrightnessTeacher(), None), progress=False)
    assert rec["status"] == "error" and "scoring failed (the video is kept at" in rec["error"]
    assert "scorer crashed" in rec["error"] and os.path.isfile(os.path.join(cfg.out, rec["video"]))


def test_vbvr_report_has_in_domain_out_of_domain_and_category_rows(fake_evalkit, vbvr_run):
    from vlmteach_fast.evaluate.summary import summarize, to_markdown

    _, recs, _ = vbvr_run
    rows = {(r.level, r.group): r for r in summarize(list(recs.values()))}
    ood = [r for r in recs.values() if r["split"] == "Out-of-Domain_50"]
    assert rows[("split", "Out-of-Domain")].instances == 2 == len(ood)
    assert rows[("split", "Out-of-Domain")].mean_score == pytest.approx(sum(r["score"] for r in ood) / 2)
    assert rows[("split", "In-Domain")].instances == 1
    assert {g for lvl, g in rows if lvl == "task"} == {"G-3_stable_sort_data-generator", "O-39_maze_data-generator"}
    md = to_markdown(list(rows.values()))
    assert "## Per split" in md and md.index("## Per split") < md.index("## Per category") < md.index("## Per task")


def test_scores_equal_the_official_entry_points_on_the_exported_tree(pipe, tmp_path):
    """With the real VBVR-EvalKit installed: our per-sample scores are what its two scripts compute on the
    bench-export tree (skipped where the EvalKit is not installed; it is not on the package index)."""
    pytest.importorskip("vbvr_bench")
    run_evaluation = pytest.importorskip("run_evaluation")
    evaluate = pytest.importorskip("evaluate")
    if not hasattr(evaluate, "VBVRBench"):
        pytest.skip("`evaluate` is not VBVR-EvalKit's evaluate.py")
    from vlmteach_fast.evaluate.export import export_official
    from vlmteach_fast.evaluate.vbvr import VBVRScorer

    gt = os.path.join(DATA, "vbvr")
    suite = load_suite(gt)
    ours = {}
    for name in ("vbvr", "vbvr:weighted"):
        cfg = _cfg(tmp_path / name.replace(":", "_"))
        cfg.scorer = VBVRScorer(name, device="cpu")
        recs = run_bench(suite, cfg, lambda: (pipe, BrightnessTeacher(), None), progress=False)
        ours[name] = {(r["task"], r["index"]): r["score"] for r in recs}
        export_official(cfg.out, tmp_path / name.replace(":", "_") / "model")
    res = run_evaluation.evaluate_model("m", str(tmp_path / "vbvr" / "model"), gt, str(tmp_path / "eval"), "cpu")
    official = {(s["task_name"], s["video_file"][:-4]): s["score"] for s in res["samples"]}
    assert official == pytest.approx(ours["vbvr"])
    res = evaluate.VBVRBench(gt, str(tmp_path / "eval2"), device="cpu").evaluate(
        str(tmp_path / "vbvr_weighted" / "model"), name="m")
    official = {(d["task_name"], d["video_idx"]): d["score"] for d in res["detailed"]}
    assert official == pytest.approx(ours["vbvr:weighted"])


def test_index_page_links_the_percent_encoded_instance_folders(ruler_run):
    from urllib.parse import unquote

    from vlmteach_fast.evaluate.html import instances_html

    _, recs, out = ruler_run
    page = instances_html(list(recs.values()))
    rec = recs["maze/1"]
    assert "maze%2F1" in rec["video"]
    href = f'src="{rec["video"].replace("%", "%25")}"'
    assert href in page  # the browser decodes %25 back to the folder's literal "%2F"
    assert os.path.isfile(out / unquote(rec["video"].replace("%", "%25")))


def test_an_official_tree_holds_one_config_and_refuses_a_folder_of_other_files(pipe, tmp_path):
    """A config edit then a ``--limit 1`` run: the tree holds that run's one video, not it beside the old config's
    others (a judge would score the mix as one model); a destination with the user's files is never replaced."""
    from vlmteach_fast.evaluate.export import export_official
    from vlmteach_fast.io_atomic import OutputSetError

    suite = load_suite(os.path.join(DATA, "vbvr"))
    out, dest = tmp_path / "run", tmp_path / "official"
    run_bench(suite, _cfg(out), lambda: (pipe, BrightnessTeacher(), None), progress=False)
    assert len(export_official(out, dest, link=True)) == 3
    edited = _cfg(out, height=32, width=32)
    edited.limit = 1
    (new,) = run_bench(suite, edited, lambda: (pipe, BrightnessTeacher(), None), progress=False)
    written = export_official(out, dest, link=True)
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == \
        ["In-Domain_50/G-3_stable_sort_data-generator/00000.mp4"]
    assert open(written[0], "rb").read() == (out / new["video"]).read_bytes()
    (dest / "notes.txt").write_text("mine")
    with pytest.raises(OutputSetError, match="notes.txt"):
        export_official(out, dest)
    assert (dest / "notes.txt").read_text() == "mine"


def test_a_users_file_in_the_bench_official_tree_leaves_it_unwritten_with_a_warning(tmp_path, capsys):
    from vlmteach_fast.evaluate.cli import main

    out = tmp_path / "run"
    (out / "official" / "baseline").mkdir(parents=True)
    (out / "official" / "baseline" / "notes.txt").write_text("mine")
    (tmp_path / "cfg.yaml").write_text("progress: false\nsampling: {num_frames: 5, final_steps: 1}\n")
    code = main(["bench", "--suite", os.path.join(DATA, "vbvr"), "--method", "baseline", "--limit", "1",
                 "--pipeline", "py:vlmteach_fast.testing:tiny_ti2v_pipeline", "--teacher",
                 "py:vlmteach_fast.testing:BrightnessTeacher", "--config", str(tmp_path / "cfg.yaml"), "--out",
                 str(out), "--no-progress"])
    assert code == 0 and (out / "summary.md").is_file()  # the run and its reports stand
    assert "bench: official layout not written:" in capsys.readouterr().err
    assert os.listdir(out / "official" / "baseline") == ["notes.txt"]
