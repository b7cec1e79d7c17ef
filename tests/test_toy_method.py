"""The method on the built-in toy world, with the shipped models: the loop's reward sees what the judge sees, an oracle
run really improves the final video (by the rule scorer, not only the loss), and runs are reproducible."""

import dataclasses

import pytest
import torch

from vlmteach_fast import toy
from vlmteach_fast.demo import demo_optimize_config
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig, optimize
from vlmteach_fast.reasoner import LightDecoderConfig
from vlmteach_fast.toy.gaming import RecordingTeacher
from vlmteach_fast.toy.oracle import GroundTruthOracle
from vlmteach_fast.toy.views import CellView


@pytest.fixture(scope="module")
def pipe():
    return toy.load_pipeline()


@pytest.fixture(scope="module")
def teacher():
    return toy.load_teacher()


def _sampling(seed=0):
    return SamplingConfig(num_frames=toy.NUM_FRAMES, height=toy.SIZE, width=toy.SIZE, final_steps=toy.SAMPLE_STEPS,
                          seed=seed)


def test_loop_reward_sees_what_the_judge_sees(pipe, teacher):
    # The shipped teacher carries the view it was trained with (one colour per cell) inside its reward, so the loop
    # and every judge call see the same preprocessing; and the demo's loop shows it every frame the judge scores.
    assert isinstance(teacher.frame_transform, CellView)
    assert teacher.config.augment_views == 0  # no random views: the loop's reward is the judge's score
    inst = toy.make_instances(1, seed=0)[0]
    rec = RecordingTeacher(teacher)
    cfg = dataclasses.replace(demo_optimize_config(), budget=None, max_steps=1, score_initial=False,
                              sampling=_sampling())
    res = optimize(pipe, rec, inst.prompt, image=inst.first_frame, queries=toy.queries_for(inst), config=cfg)
    in_loop, judged = rec.frames[0], rec.frames[-1]  # step 0's light decode; the final sample's full decode
    assert in_loop.shape == judged.shape == res.frames.shape == (1, toy.NUM_FRAMES, 3, toy.SIZE, toy.SIZE)
    # the demo judges with the same teacher object it optimizes against
    from vlmteach_fast.demo import DemoConfig, _models

    loop_teacher, judge = _models(DemoConfig(instances=1))[1:]
    assert loop_teacher is judge


def test_ground_truth_oracle_raises_the_rule_score_of_the_final_video(pipe):
    # k-step 4/4 with the full VAE: the video the oracle scores in the loop is the final sample itself
    gains = []
    for i, inst in enumerate(toy.make_instances(3, seed=0)):
        cfg = OptimizeConfig(mode="k_step", steps=4, grad_steps=4, lr=1e-2, max_steps=8, patience=99,
                             yes_threshold=1.0, decoder=LightDecoderConfig(kind="full"),
                             lora=demo_optimize_config().lora, keep_initial_if_better=False, sampling=_sampling(i),
                             progress=False)
        res = optimize(pipe, GroundTruthOracle(inst), inst.prompt, image=inst.first_frame, config=cfg)
        assert res.history[-1].loss < res.history[0].loss
        gains.append(toy.score_video(inst, res.frames[0]).score - toy.score_video(inst, res.initial_frames[0]).score)
    # measured with the demo's cross-attention LoRA: +0.26 mean over these 3 instances (-0.02, +0.74, +0.07)
    assert sum(gains) / len(gains) > 0.05, gains


def test_same_seeds_and_config_give_the_same_scores(pipe, teacher):
    inst = toy.make_instances(2, seed=0)[1]
    units = {"candidate": 0.09, "step": 0.075}  # recorded unit costs: the step count does not depend on the clock
    cfg = dataclasses.replace(demo_optimize_config(), budget={"best_of_n": 5, "unit_costs": units},
                              sampling=_sampling(1))
    runs = [optimize(pipe, teacher, inst.prompt, image=inst.first_frame, queries=toy.queries_for(inst), config=cfg)
            for _ in range(2)]
    assert len(runs[0].history) == len(runs[1].history) == runs[0].cost.extra["planned_steps"]
    assert torch.equal(runs[0].frames, runs[1].frames)
    assert runs[0].final_p_yes == runs[1].final_p_yes
    assert toy.score_video(inst, runs[0].frames[0]).score == toy.score_video(inst, runs[1].frames[0]).score


def test_the_demo_trust_region_waits_past_the_steps_best_of_5_buys(pipe, teacher):
    """The demo's trust region counts from step ``anchor_start``: at best_of_n:5 (the recorded dev-CPU units plan 4
    steps) the run is the one without it; a longer run pays for its distance to the plain prediction."""
    inst = toy.make_instances(2, seed=0)[1]
    units = {"candidate": 0.0890, "step": 0.1055, "evaluation": 0.0557, "finish": 0.0636}
    demo = dataclasses.replace(demo_optimize_config(), budget={"best_of_n": 5, "unit_costs": units},
                               sampling=_sampling(1))
    assert demo.anchor > 0
    kw = dict(image=inst.first_frame, queries=toy.queries_for(inst))
    free = dataclasses.replace(demo, anchor=0.0)
    short = [optimize(pipe, teacher, inst.prompt, config=c, **kw) for c in (demo, free)]
    assert short[0].cost.extra["planned_steps"] == 4 <= demo.anchor_start
    assert torch.equal(short[0].frames, short[1].frames)
    steps = dict(budget=None, max_steps=demo.anchor_start + 2, yes_threshold=1.0, patience=99)
    long = [optimize(pipe, teacher, inst.prompt, config=dataclasses.replace(c, **steps), **kw)
            for c in (demo, free)]
    first = demo.anchor_start
    assert [h.loss for h in long[0].history[:first]] == [h.loss for h in long[1].history[:first]]
    assert long[0].history[-1].loss != long[1].history[-1].loss


def test_gradient_alignment_is_one_for_the_ground_truth_oracle_and_minus_one_reversed():
    from vlmteach_fast.toy.gaming import gradient_alignment

    inst = toy.make_instances(1, seed=0)[0]
    videos = torch.rand(3, toy.NUM_FRAMES, 3, toy.SIZE, toy.SIZE, generator=torch.Generator().manual_seed(0))
    oracle = GroundTruthOracle(inst)  # reward = -k * mean (frames - solution)^2: its gradient is along solution - video
    cos = gradient_alignment(oracle, videos, [inst] * 3)
    torch.testing.assert_close(cos, torch.ones(3), atol=1e-5, rtol=0)

    class Reversed:
        def reward(self, frames, queries, **kwargs):
            out = oracle.reward(frames, queries)
            return dataclasses.replace(out, reward=-out.reward)

    torch.testing.assert_close(gradient_alignment(Reversed(), videos, [inst] * 3), -torch.ones(3), atol=1e-5, rtol=0)
    assert not videos.requires_grad  # the inputs are left alone


def test_gaming_run_traces_the_videos_the_teacher_scored(teacher):
    from vlmteach_fast.toy.gaming import gaming_run, verdict

    inst = toy.make_instances(1, seed=0)[0]
    tr = gaming_run(toy.load_pipeline(), teacher, inst, steps=2)  # a fresh pipeline: its own LoRA spec
    assert tr.videos.shape == (2, toy.NUM_FRAMES, 3, toy.SIZE, toy.SIZE) and len(tr.p_yes) == len(tr.rule) == 2
    assert tr.last == toy.score_video(inst, tr.videos[-1])  # the verdict judges the last video the teacher scored
    assert tr.rule[-1] == tr.last.score
    assert tr.fooled == verdict(tr.p_yes[-1], tr.last).fooled
