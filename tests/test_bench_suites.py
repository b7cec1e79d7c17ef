"""Benchmark suites: RULER-style JSON/JSONL and VBVR-style folders, with file:line errors for malformed items."""

import json

import pytest

from vlmteach_fast.evaluate.suites import checklist_queries, load_ruler, load_suite, load_vbvr


def _png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 10, 10)).save(path)
    return path


def _item(i, **kw):
    base = {"index": i, "task_name": "maze", "category": "spatial", "prompt": f"solve {i}",
            "checklist": [{"Rule Coherence": "Does the ball avoid walls?"},
                          {"Visual Fidelity": "Is it sharp?"},
                          {"Instruction Following": "Does it reach the goal?"}]}
    base.update(kw)
    return base


def test_ruler_jsonl_parses_good_items_and_names_file_and_line_of_bad_ones(tmp_path):
    _png(tmp_path / "imgs" / "a.png")
    lines = [json.dumps(_item(0, input_image_path="imgs/a.png")),
             "{not json",
             json.dumps(_item(2, checklist=[{"Rule Coherense": "typo?"}])),
             "",
             json.dumps(_item(4, input_image_path="imgs/missing.png")),
             json.dumps({"index": 5, "task_name": "x", "prompt": "p"}),
             json.dumps(_item(0)),  # duplicate index
             json.dumps(_item(7, checklist=[{"Rule Coherence": "a", "Visual Fidelity": "b"}])),
             json.dumps(_item(8))]
    path = tmp_path / "suite.jsonl"
    path.write_text("\n".join(lines) + "\n")
    suite = load_ruler(str(path))
    assert [it.id for it in suite.items] == ["maze/0", "maze/8"] and suite.items[1].index == "8"
    assert suite.items[0].image == str(tmp_path / "imgs" / "a.png")
    assert suite.items[0].source == f"{path}:1" and suite.items[1].source == f"{path}:9"
    errs = {int(e.where.rsplit(":", 1)[1]): e.message for e in suite.errors}
    assert sorted(errs) == [2, 3, 5, 6, 7, 8]
    assert "not valid JSON" in errs[2]
    assert "unknown metric 'Rule Coherense'" in errs[3] and "Instruction Following" in errs[3]
    assert "input_image_path` file not found" in errs[5] and "missing.png" in errs[5]
    assert "missing key(s) ['category']" in errs[6]
    assert "duplicate index '0' in task 'maze'" in errs[7] and f"{path}:1" in errs[7]
    assert "one-key object" in errs[8]
    assert all(str(e).startswith(f"{path}:") for e in suite.errors)


def test_checklist_queries_use_the_chosen_metrics_in_file_order(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text(json.dumps(_item(0)) + "\n" + json.dumps(_item(1, checklist=[{"Visual Fidelity": "sharp?"}])))
    a, b = load_ruler(str(path)).items
    q = checklist_queries(a)
    assert q.goal == "Does the ball avoid walls?" and q.process == ["Does it reach the goal?"]
    assert checklist_queries(a, ("Visual Fidelity",)).questions == ["Is it sharp?"]
    assert checklist_queries(b) is None  # no rule/instruction question: the teacher writes its own


def test_ruler_json_errors_point_at_the_line_where_the_item_starts(tmp_path):
    items = [_item(0), _item(1, prompt=""), _item(2)]
    path = tmp_path / "suite.json"
    text = json.dumps(items, indent=2)
    path.write_text(text)
    suite = load_ruler(str(path))
    assert [it.id for it in suite.items] == ["maze/0", "maze/2"]
    (err,) = suite.errors
    starts = [i + 1 for i, line in enumerate(text.splitlines()) if line == "  {"]  # each object's opening brace
    assert len(starts) == 3 and starts[1] > 2
    start_line = starts[1]
    assert err.where == f"{path}:{start_line}" and "prompt" in err.message


def test_ruler_json_that_is_not_json_is_fatal_with_file_and_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"index": 0,\n  oops\n]')
    with pytest.raises(ValueError, match=r"bad\.json:3: not valid JSON"):
        load_ruler(str(path))


def test_vbvr_folder_keeps_split_task_and_ground_truth(tmp_path):
    root = tmp_path / "vbvr"
    for split, task, sample, gt in [("test", "maze", "000", True), ("test", "maze", "001", False),
                                    ("test", "sort", "000", False), ("val", "maze", "000", False)]:
        d = root / split / task / sample
        _png(d / "first_frame.png")
        (d / "prompt.txt").write_text(f"{task} {sample}\n")
        if gt:
            _png(d / "final_frame.png")
    bad = root / "test" / "sort" / "001"
    _png(bad / "first_frame.png")  # no prompt.txt
    suite = load_vbvr(str(root))
    assert [it.id for it in suite.items] == ["test/maze/000", "test/maze/001", "test/sort/000", "val/maze/000"]
    first = suite.items[0]
    assert (first.split, first.task, first.category, first.prompt) == ("test", "maze", "maze", "maze 000")
    assert set(first.ground_truth) == {"final_frame"} and suite.items[1].ground_truth == {}
    assert first.index == "000" and first.dir_name == "test%2Fmaze%2F000"
    (err,) = suite.errors
    assert err.where == str(bad) and "prompt.txt" in err.message
    assert load_suite(str(root)).kind == "vbvr"


@pytest.mark.parametrize("spec,exc,message", [
    ("/no/such/suite.jsonl", FileNotFoundError, "--suite not found"),
    ("toy:0", ValueError, "positive N"),
    ("toy:x", ValueError, "positive N"),
])
def test_load_suite_rejects_bad_specs(spec, exc, message):
    with pytest.raises(exc, match=message):
        load_suite(spec)


def test_load_suite_rejects_other_file_types_and_empty_folders(tmp_path):
    (tmp_path / "s.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match=r"must end in \.json or \.jsonl"):
        load_suite(str(tmp_path / "s.csv"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no <split>/<task>/<sample>/ folders"):
        load_suite(str(tmp_path / "empty"))


def test_toy_suite_items_are_scored_by_the_rule_scorer():
    import torch

    pytest.importorskip("vlmteach_fast.toy")
    from vlmteach_fast.evaluate.runner import score_item

    suite = load_suite("toy:3")
    assert suite.kind == "toy" and len(suite.items) == 3 and len({it.id for it in suite.items}) == 3
    more = load_suite("toy:5")  # a longer toy suite extends the shorter one: resuming runs only the new ones
    assert more.name == suite.name and [it.id for it in more.items[:3]] == [it.id for it in suite.items]
    assert all(torch.equal(a.toy.first_frame, b.toy.first_frame) for a, b in zip(suite.items, more.items))
    item = suite.items[0]
    solved = score_item(item, item.toy.solution[None], [0.2])
    assert solved["score_name"] == "rule" and solved["score"] == 1.0 and solved["passed"] is True
    assert solved["scores"]["teacher"] == pytest.approx(0.2)
    frozen = item.toy.first_frame[None].expand(item.toy.solution.shape[0], -1, -1, -1)[None]
    assert score_item(item, frozen, [0.9])["passed"] is False  # standing still never solves a task


def test_dir_names_are_single_safe_components_that_give_the_id_back():
    from vlmteach_fast.evaluate.suites import BenchItem, item_id_from_dir

    ids = ("a/b", "a_b", "a b", "..", ".hidden", "In-Domain_50/G-3_stable_sort_data-generator/00000", "x%2Fy", "é")
    names = [BenchItem(id=i, task="t", category="c", prompt="p").dir_name for i in ids]
    assert len(set(names)) == len(ids) and "a_b" in names
    assert all("/" not in n and not n.startswith(".") for n in names)
    assert [item_id_from_dir(n) for n in names] == list(ids)


def test_official_ruler_file_keeps_every_task_and_the_judge_fields():
    import os

    root = os.path.join(os.path.dirname(__file__), "data", "ruler")
    suite = load_suite(os.path.join(root, "data.jsonl"))
    assert suite.errors == []  # indices restart per task: (task_name, index) is the key
    assert [it.id for it in suite.items] == ["maze/0", "maze/1", "anomaly/0", "physics/0"]
    assert [(it.task, it.index) for it in suite.items] == [("maze", "0"), ("maze", "1"), ("anomaly", "0"),
                                                            ("physics", "0")]
    maze1, anomaly, physics = suite.items[1:]
    assert maze1.extra == {"gt_image_path": os.path.join(root, "images", "maze_1_gt.png")}
    assert anomaly.extra == {"implicit_explanation": "The white block is the only object of its colour."}
    assert physics.extra == {"input_video_path": os.path.join(root, "videos", "physics_0.mp4")}
    assert physics.image is None and anomaly.category == "vision rule"


def test_missing_judge_files_are_reported_per_item(tmp_path):
    _png(tmp_path / "a.png")
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(_item(0, input_image_path="a.png", gt_image_path="gone.png")) + "\n"
                    + json.dumps(_item(1, implicit_explanation=3)) + "\n")
    suite = load_ruler(str(path))
    assert suite.items == [] and len(suite.errors) == 2
    assert "`gt_image_path` file not found" in suite.errors[0].message
    assert "`implicit_explanation` must be a string" in suite.errors[1].message


def test_score_item_prefers_judge_over_final_frame_over_teacher(tmp_path):
    import torch
    from PIL import Image

    from vlmteach_fast.evaluate.runner import score_item
    from vlmteach_fast.evaluate.suites import BenchItem

    Image.new("RGB", (4, 4), (255, 0, 0)).save(tmp_path / "final.png")
    frames = torch.zeros(1, 3, 3, 8, 8)
    frames[0, -1, 0] = 1.0  # the last frame is pure red at 8x8: matches the 4x4 red ground truth exactly
    item = BenchItem(id="x", task="t", category="c", prompt="p",
                     ground_truth={"final_frame": str(tmp_path / "final.png")},
                     checklist=[("Rule Coherence", "q1"), ("Rule Coherence", "q2"), ("Visual Fidelity", "q3")])
    plain = score_item(item, frames, [0.6, 0.2])
    assert plain["score_name"] == "final_frame_match" and plain["passed"] is None
    assert plain["score"] == pytest.approx(1.0)
    assert plain["scores"]["teacher"] == pytest.approx(0.4)
    frames[0, -1, 0] = 0.0  # black: off by 1 in one of 3 channels
    assert score_item(item, frames, [0.6])["score"] == pytest.approx(2 / 3)

    class Judge:
        def label(self, frames, prompt, questions):
            assert questions == ["q1", "q2", "q3"]
            return ["Good", "Poor", "Good"]

    def scorer(it, video):
        assert it is item and video.shape == (1, 3, 3, 8, 8)
        return {"score": 0.25, "passed": False, "parts": {"walls": 0.5}}

    custom = score_item(item, frames, [0.6], judge=Judge(), scorer=scorer)  # an explicit scorer comes first
    assert (custom["score_name"], custom["score"], custom["passed"]) == ("scorer", 0.25, False)
    assert custom["scores"]["scorer_parts"] == {"walls": 0.5} and custom["scores"]["checklist"] == 75.0
    assert score_item(item, frames, [0.6], scorer=lambda it, v: 0.5)["passed"] is None
    with pytest.raises(ValueError, match="must return a number or a dict with 'score'"):
        score_item(item, frames, [0.6], scorer=lambda it, v: {"value": 1})
    judged = score_item(item, frames, [0.6], judge=Judge())
    # Rule Coherence (2 + 0) / 2 = 1, Visual Fidelity 2 -> (1 + 2) / 2 * 50 = 75
    assert judged["score_name"] == "checklist" and judged["score"] == pytest.approx(75.0) and judged["passed"] is False
    assert judged["scores"]["checklist_labels"] == ["Good", "Poor", "Good"]


def test_ruler_paths_outside_the_suite_folder_are_refused_unless_allowed(tmp_path):
    root = tmp_path / "dataset"
    _png(root / "imgs" / "a.png")
    outside = _png(tmp_path / "elsewhere.png")
    path = root / "suite.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in [
        _item(0, input_image_path="imgs/a.png"),
        _item(1, input_image_path="../elsewhere.png"),
        _item(2, input_image_path=str(outside)),  # absolute
        _item(3, gt_image_path="imgs/../../elsewhere.png")]) + "\n")
    suite = load_suite(str(path))
    assert [it.id for it in suite.items] == ["maze/0"]
    errs = [str(e) for e in suite.errors]
    assert errs[0] == (f"{path}:2: item maze/1: `input_image_path` '../elsewhere.png' leads outside the suite's "
                       f"folder '{root}'; paths in a suite file must stay under it (--allow-outside-paths to allow it)")
    assert "item maze/2: `input_image_path`" in errs[1] and "item maze/3: `gt_image_path`" in errs[2]
    allowed = load_suite(str(path), allow_outside_paths=True)
    assert [it.image for it in allowed.items[1:3]] == [str(outside)] * 2 and not allowed.errors


@pytest.mark.parametrize("field,value", [("task_name", "../../escape"), ("task_name", ".."), ("task_name", "a/b"),
                                         ("index", "../3")])
def test_ruler_task_names_and_indices_that_cannot_be_file_names_are_refused_at_load(tmp_path, field, value):
    path = tmp_path / "suite.jsonl"
    path.write_text(json.dumps(_item(0, **{field: value})) + "\n" + json.dumps(_item(1)) + "\n")
    suite = load_suite(str(path))
    assert [it.id for it in suite.items] == ["maze/1"]
    (err,) = suite.errors
    assert err.where == f"{path}:1" and f"`{field}` must be usable as one file name" in err.message
    assert f"got {value!r}" in err.message and err.message.startswith("item ")
