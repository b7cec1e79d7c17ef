"""Sanity methods (static, end_state, ground_truth): their videos, per-item refusals, records, resume, export and the
summary's words about methods that do not beat ``static``."""

import os

import pytest
import torch

from vlmteach_fast.evaluate import BenchConfig, load_suite, read_all_records, run_bench
from vlmteach_fast.evaluate.summary import sanity_notes, summarize, to_markdown
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.methods import METHODS, SANITY_METHODS, run_method
from vlmteach_fast.optimization import OptimizeConfig
from vlmteach_fast.testing import BrightnessTeacher

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
VBVR = os.path.join(DATA, "vbvr")


def _config(**sampling):
    return OptimizeConfig(progress=False, sampling=SamplingConfig(num_frames=5, **sampling))


def test_sanity_videos_are_the_first_frame_the_cut_and_the_answer():
    assert set(SANITY_METHODS) <= set(METHODS)
    first, final = torch.full((3, 8, 12), 0.2), torch.full((3, 16, 24), 0.9)
    answer = torch.rand(7, 3, 8, 12)
    gt = {"final_frame": final, "video": answer}
    static = run_method("static", None, None, "p", image=first, config=_config())
    assert static.frames.shape == (1, 5, 3, 8, 12) and torch.equal(static.frames[0, 3], first)
    assert static.p_yes == [] and static.cost.denoiser_forward == 0 and static.stop_reason is None
    cut = run_method("end_state", None, None, "p", image=first, config=_config(), ground_truth=gt)
    assert torch.equal(cut.frames[0, 0], first) and torch.allclose(cut.frames[0, 1:], torch.full((4, 3, 8, 12), 0.9))
    truth = run_method("ground_truth", None, None, "p", image=first, config=_config(), ground_truth=gt)
    assert torch.equal(truth.frames[0], answer)  # all of its own frames, not num_frames
    # sampling's size, when set, is the size of every sanity video (as a model run at that size)
    padded = run_method("static", None, None, "p", image=first, config=_config(height=16, width=16, fit="pad"))
    assert padded.frames.shape == (1, 5, 3, 16, 16) and padded.geometry["fit"] == "pad"
    # a teacher, when given, scores it as it scores every method
    scored = run_method("static", None, BrightnessTeacher(), "p", image=first, config=_config())
    assert len(scored.p_yes) == 2 and scored.cost.reward_calls == 1 and scored.cost.generate_calls == 1
    with pytest.raises(ValueError, match="end_state needs a ground-truth final frame.*gt_image_path"):
        run_method("end_state", None, None, "p", image=first, config=_config())
    with pytest.raises(ValueError, match="ground_truth needs the suite's ground-truth video"):
        run_method("ground_truth", None, None, "p", image=first, config=_config(), ground_truth={"final_frame": final})


def _no_models():
    raise AssertionError("nothing is pending: models must not load")


@pytest.fixture(scope="module")
def vbvr_sanity(tmp_path_factory):
    out = tmp_path_factory.mktemp("sanity")
    suite = load_suite(VBVR)
    recs = {}
    for m in SANITY_METHODS:
        cfg = BenchConfig(method=m, out=str(out), optimize=_config())
        recs[m] = {r["instance_id"]: r for r in run_bench(suite, cfg, lambda: (None, None, None), progress=False)}
        assert len(run_bench(suite, cfg, _no_models, progress=False)) == 3  # resume: nothing to redo
    return suite, recs, out


def test_sanity_methods_run_over_vbvr_as_methods(vbvr_sanity, tmp_path):
    from vlmteach_fast.evaluate.export import export_official

    suite, recs, out = vbvr_sanity
    for m in SANITY_METHODS:
        assert all(r["status"] == "ok" and r["score_name"] == "final_frame_match" for r in recs[m].values()), m
        assert all(os.path.isfile(os.path.join(out, r["video"])) for r in recs[m].values())
    mean = {m: sum(r["score"] for r in recs[m].values()) / 3 for m in SANITY_METHODS}
    assert mean["end_state"] == pytest.approx(1.0) and mean["ground_truth"] > 0.95 > mean["static"]
    written = export_official(out, tmp_path / "static", method="static")
    assert len(written) == 3 and all(p.endswith(".mp4") for p in written)
    rows = {(r.method, r.level): r for r in summarize(read_all_records(out))}
    assert {m for m, level in rows if level == "all"} == set(SANITY_METHODS)


def test_end_state_is_refused_per_item_where_the_suite_has_no_final_frame(tmp_path, caplog):
    suite = load_suite(os.path.join(DATA, "ruler", "data.jsonl"))
    cfg = BenchConfig(method="end_state", out=str(tmp_path), optimize=_config(height=32, width=32))
    with caplog.at_level("WARNING", logger="vlmteach_fast.evaluate.runner"):
        recs = {r["instance_id"]: r for r in run_bench(suite, cfg, lambda: (None, BrightnessTeacher(), None),
                                                         progress=False)}
    assert not caplog.records  # a refusal is its reason in the record, not a traceback
    assert recs["maze/1"]["status"] == "ok" and recs["maze/1"]["score_name"] == "teacher"  # has gt_image_path
    assert recs["maze/0"]["status"] == "error"
    assert "end_state needs a ground-truth final frame" in recs["maze/0"]["error"]


def test_toy_ground_truth_solves_and_static_does_not(tmp_path):
    pytest.importorskip("vlmteach_fast.toy")
    suite = load_suite("toy:3")
    score = {}
    for m in ("static", "ground_truth"):
        cfg = BenchConfig(method=m, out=str(tmp_path), optimize=_config())
        recs = run_bench(suite, cfg, lambda: (None, None, None), progress=False)
        assert all(r["score_name"] == "rule" for r in recs)
        score[m] = [r["score"] for r in recs]
    assert all(g > s for g, s in zip(score["ground_truth"], score["static"]))
    assert all(g == pytest.approx(1.0) for g in score["ground_truth"])


def _rec(method, iid, score, name="scorer"):
    return {"instance_id": iid, "method": method, "config_hash": method[:3], "status": "ok", "score": score,
            "score_name": name, "passed": None, "task": "t", "category": "c", "split": "", "cost": {}}


def test_summary_says_in_words_when_a_method_does_not_beat_static():
    recs = [_rec("static", "a", 0.6), _rec("static", "b", 0.5), _rec("optimize", "a", 0.55),
            _rec("optimize", "b", 0.5), _rec("best_of_n", "a", 0.9), _rec("best_of_n", "b", 0.7),
            _rec("ground_truth", "a", 1.0), _rec("ground_truth", "b", 1.0)]
    notes = dict((text.split()[0].strip("*`"), (warn, text)) for warn, text in sanity_notes(recs))
    assert notes["optimize"][0] and "does not beat `static`" in notes["optimize"][1]
    assert "0.525 against 0.550 over 2 instances" in notes["optimize"][1]
    assert not notes["best_of_n"][0] and "beats `static`" in notes["best_of_n"][1]
    assert "the benchmark's own answer" in notes["ground_truth"][1]
    md = to_markdown(summarize(recs), notes=sanity_notes(recs))
    assert "## Sanity rows" in md and "**optimize does not beat `static`**" in md
    # no static row: the report says how to add one
    (only,) = sanity_notes([r for r in recs if r["method"] == "optimize"])
    assert "--method static" in only[1]


def test_cli_runs_a_sanity_method_without_a_video_model(tmp_path, capsys):
    from vlmteach_fast.evaluate.cli import main

    out = tmp_path / "run"
    cfg = tmp_path / "c.yaml"
    cfg.write_text("sampling: {num_frames: 5}\n")
    assert main(["bench", "--suite", VBVR, "--method", "static", "--config", str(cfg), "--out", str(out),
                 "--no-progress"]) == 0  # no --pipeline, no --teacher: final_frame_match scores it
    assert len(list((out / "official" / "static").rglob("*.mp4"))) == 3
    assert "## Sanity rows" not in (out / "summary.md").read_text()  # static alone: nothing to compare
    with pytest.raises(SystemExit, match="needs --teacher, --judge or --scorer"):
        main(["bench", "--suite", os.path.join(DATA, "ruler", "data.jsonl"), "--method", "static",
              "--out", str(tmp_path / "r")])
