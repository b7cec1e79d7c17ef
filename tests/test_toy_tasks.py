"""Toy world: generators are deterministic per seed and valid; scorers give 1 on ground truth and less on each
corruption, on the part that corruption breaks."""

import pytest
import torch

from vlmteach_fast.toy.corrupt import BREAKS, applicable_corruptions, corrupt
from vlmteach_fast.toy.scorers import PARTS, ScoreWeights, score_video
from vlmteach_fast.toy.tasks import (DIFFICULTIES, TASK_TYPES, instance_seed, make_instance, make_instances,
                                     physics_video)
from vlmteach_fast.toy.world import NUM_FRAMES, SIZE


@pytest.mark.parametrize("task_type", TASK_TYPES)
def test_same_seed_same_instance_other_seed_differs(task_type):
    a, b = make_instance(task_type, 7), make_instance(task_type, 7)
    assert torch.equal(a.solution, b.solution) and a.agent_path == b.agent_path and a.difficulty == b.difficulty
    others = [make_instance(task_type, s) for s in range(8, 14)]
    assert any(not torch.equal(a.solution, o.solution) for o in others)
    assert torch.equal(physics_video(a, 3), physics_video(b, 3))


def test_instances_shapes_range_and_cycling():
    insts = make_instances(9, seed=1)
    assert [i.task_type for i in insts[:3]] == list(TASK_TYPES)
    for i in insts:
        assert i.solution.shape == (NUM_FRAMES, 3, SIZE, SIZE) and i.solution.dtype == torch.float32
        assert i.first_frame.shape == (3, SIZE, SIZE)
        assert torch.equal(i.solution[0], i.first_frame)
        assert 0 <= float(i.solution.min()) and float(i.solution.max()) <= 1
        assert i.difficulty in DIFFICULTIES and i.prompt


def test_train_and_test_seeds_disjoint():
    test = {instance_seed(i, s, "test") for s in range(3) for i in range(1000)}
    train = {instance_seed(i, s, "train") for s in range(3) for i in range(1000)}
    assert not test & train
    assert make_instances(2, seed=0, split="train")[0].seed != make_instances(2, seed=0)[0].seed


def test_solution_paths_are_valid_moves():
    for inst in make_instances(21, seed=2):
        path = inst.agent_path
        for a, b in zip(path, path[1:]):
            assert abs(a[0] - b[0]) + abs(a[1] - b[1]) <= 1
            assert not inst.walls[b]
        if inst.task_type == "push":
            assert inst.block_path[-1] == inst.mark
        else:
            assert path[-1] == inst.target


def test_difficulty_controls_length():
    easy = [len(set(make_instance("maze", s, "easy").agent_path)) - 1 for s in range(10)]
    hard = [len(set(make_instance("maze", s, "hard").agent_path)) - 1 for s in range(10)]
    assert max(easy) <= 3 < 7 <= min(hard)


@pytest.mark.parametrize("bad", [dict(n=0), dict(n=3, task_types=("jump",)), dict(n=3, split="dev")])
def test_make_instances_rejects_bad_arguments(bad):
    with pytest.raises(ValueError):
        make_instances(**bad)


def test_ground_truth_scores_one():
    for inst in make_instances(15, seed=3):
        s = score_video(inst, inst.solution)
        assert s.passed and s.score == 1.0 and all(s.parts[p] == 1.0 for p in PARTS), (inst.task_type, s)


def test_each_corruption_lowers_its_part():
    seen = set()
    for inst in make_instances(15, seed=4):
        for kind in applicable_corruptions(inst):
            s = score_video(inst, corrupt(inst, kind))
            assert not s.passed and s.score < 1.0, (inst.task_type, kind, s)
            assert s.parts[BREAKS[kind]] < 1.0, (inst.task_type, kind, s)
            seen.add(kind)
    assert seen == set(BREAKS)


def test_physics_walks_keep_rules_and_rarely_reach_goal():
    insts = make_instances(21, seed=5)
    scores = [score_video(i, physics_video(i, 0)) for i in insts]
    assert all(s.parts["rules"] == 1.0 and s.parts["integrity"] == 1.0 for s in scores)
    assert sum(s.passed for s in scores) < 0.3 * len(scores)


def test_near_solutions_follow_the_solution_then_keep_the_rules():
    insts = make_instances(30, seed=5)
    for i in insts[:6]:
        assert torch.equal(physics_video(i, 3, prefix=8), i.solution)
        assert torch.equal(physics_video(i, 3, prefix=4)[:5], i.solution[:5])
    pass_rate = {k: sum(score_video(i, physics_video(i, 1, prefix=k)).passed for i in insts) for k in (0, 6)}
    assert pass_rate[6] > pass_rate[0]
    for i in insts:
        s = score_video(i, physics_video(i, 2, prefix=5))
        assert s.parts["rules"] == 1.0 and s.parts["integrity"] == 1.0
    with pytest.raises(ValueError, match="prefix"):
        physics_video(insts[0], 0, prefix=9)


def test_noise_and_blank_videos_fail():
    inst = make_instance("reach", 0)
    blank = torch.zeros(NUM_FRAMES, 3, SIZE, SIZE)
    assert score_video(inst, blank).parts["integrity"] == 0.0
    noisy = (inst.solution + 0.5 * torch.randn_like(inst.solution)).clamp(0, 1)
    assert score_video(inst, noisy).score < 0.5


def test_scorer_input_checks():
    inst = make_instance("reach", 0)
    with pytest.raises(ValueError, match="video"):
        score_video(inst, torch.zeros(9, 3, 16, 16))
    with pytest.raises(TypeError, match="instance"):
        score_video("reach", inst.solution)
    with pytest.raises(ValueError, match="goal"):
        ScoreWeights(goal=-1)


def test_gaming_verdict_splits_fooled_into_wrong_answers_and_calibration():
    from vlmteach_fast.toy.gaming import verdict
    from vlmteach_fast.toy.scorers import RuleScore

    near = RuleScore(score=0.88, parts=dict(goal=1.0, rules=0.62, integrity=0.89, background=0.89), passed=False)
    v = verdict([0.9, 0.85, 0.87, 0.83], near)
    assert (v.fooled, v.wrong_yes, v.calibrated_fooled) == (True, 0, True)  # the parts as P(yes) say yes too
    far = RuleScore(score=0.43, parts=dict(goal=0.0, rules=0.5, integrity=0.78, background=0.89), passed=False)
    v = verdict([0.82, 0.82, 0.72, 0.55], far)
    assert (v.fooled, v.wrong_yes, v.calibrated_fooled) == (True, 1, False)  # yes to the goal it missed
    v = verdict([0.82, 0.4, 0.72, 0.55], far)
    assert (v.fooled, v.wrong_yes) == (False, 1)
    solved = RuleScore(score=1.0, parts=dict(goal=1.0, rules=1.0, integrity=1.0, background=1.0), passed=True)
    v = verdict([0.9] * 4, solved)
    assert (v.fooled, v.wrong_yes, v.calibrated_fooled) == (False, 0, False)
    with pytest.raises(ValueError, match="p_yes"):
        verdict([0.9] * 3, solved)
