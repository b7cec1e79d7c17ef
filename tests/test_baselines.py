"""Baselines share optimize's setup and cost record: baseline, best_of_n (ranking), vlm_as_solver (plan + rounds)."""

import os

import pytest
import torch

from vlmteach_fast.baselines import baseline, best_of_n, vlm_as_solver
from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.testing import GEOM, BrightnessTeacher, first_frame, tiny_ti2v_pipeline

PROMPT = "make the ball reach the square"
SAMPLING = SamplingConfig(final_steps=2, **GEOM)



def test_best_of_n_ranks_candidates_and_returns_the_best(pipe, tmp_path):
    teacher = BrightnessTeacher()
    res = best_of_n(pipe, teacher, PROMPT, image=first_frame(), n=3, sampling=SAMPLING)
    rewards = [c["reward"] for c in res.candidates]
    assert rewards == sorted(rewards, reverse=True) and len(rewards) == 3
    assert sorted(c["seed"] for c in res.candidates) == [0, 1, 2]
    assert len(set(rewards)) == 3  # different seeds, different videos
    # the returned video is the best candidate's: re-score it
    again = teacher.reward(res.frames, res.queries)
    assert float(again.reward) == pytest.approx(rewards[0], abs=1e-6)
    assert res.cost.denoiser_forward == 3 * 2 and res.cost.full_decodes == 3 and res.cost.reward_calls == 3
    assert res.cost.denoiser_backward == 0
    paths = res.save(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["manifest.json", "result.json", "video.gif", "video.mp4"] and len(paths) == 4


def test_baseline_is_the_plain_model(pipe):
    from vlmteach_fast.reasoner import Reasoner

    res = baseline(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), sampling=SAMPLING)
    r = Reasoner.from_pipeline(tiny_ti2v_pipeline())  # fresh, zero LoRA = the plain model
    prep = r.prepare(PROMPT, first_frame(), **GEOM, seed=0)
    torch.testing.assert_close(r.sample(prep, steps=2).frames, res.frames, rtol=0, atol=1e-6)
    assert res.method == "baseline" and res.cost.denoiser_forward == 2


def test_candidates_sample_without_the_adapter(pipe, monkeypatch):
    """Best-of-N's candidates and the candidate unit of a best_of_n:N budget are sampled with the adapter layers
    bypassed: what a plain pipeline costs, not a pipeline carrying a zero LoRA."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    from vlmteach_fast.instance import setup_instance
    from vlmteach_fast.optimization import OptimizeConfig, unit_costs
    from vlmteach_fast.reasoner import Reasoner

    seen = []
    original = Reasoner.sample

    def spy(self, *args, **kwargs):
        layers = [m for m in self.transformer.modules() if isinstance(m, BaseTunerLayer)]
        seen.append(bool(layers) and all(m.disable_adapters for m in layers))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Reasoner, "sample", spy)
    teacher = BrightnessTeacher()
    best_of_n(pipe, teacher, PROMPT, image=first_frame(), n=2, sampling=SAMPLING)
    assert seen == [True, True]
    seen.clear()
    cfg = OptimizeConfig(mode="k_step", steps=2, sampling=SAMPLING, progress=False)
    setup = setup_instance(pipe, teacher, PROMPT, first_frame(), None, cfg.sampling, cfg.lora, cfg.max_process)
    unit_costs(setup, teacher, cfg)
    assert seen and all(seen)


def test_vlm_as_solver_appends_a_plan_and_runs_critique_rounds(pipe):
    from vlmteach_fast.teacher import RewardConfig, VLMTeacher
    from vlmteach_fast.testing import make_qwen_vl

    model, tok = make_qwen_vl()
    teacher = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, process_frames=2))
    res = vlm_as_solver(pipe, teacher, PROMPT, image=first_frame(), queries=["Is the ball on the square?"],
                        rounds=1, max_new_tokens=6, sampling=SAMPLING)
    assert res.cost.generate_calls == 2 and res.cost.denoiser_forward == 2 * 2 and len(res.candidates) == 2
    assert all(c["prompt"].startswith(PROMPT) for c in res.candidates)
    assert res.prompt in [c["prompt"] for c in res.candidates]


def test_vlm_as_solver_needs_a_text_teacher(pipe):
    with pytest.raises(TypeError, match="needs a teacher that can write text"):
        vlm_as_solver(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), sampling=SAMPLING)


@pytest.mark.parametrize("bad,pattern", [(0, "`n` must be an int >= 1"), (2.5, "`n` must be an int >= 1")])
def test_best_of_n_rejects_bad_n(pipe, bad, pattern):
    with pytest.raises(ValueError, match=pattern):
        best_of_n(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), n=bad, sampling=SAMPLING)


def test_best_of_n_picks_with_the_judge_when_one_is_given(pipe):
    """A judge with the opposite preference picks the candidate the teacher ranks last: selection follows the
    judge, the teacher still scores every candidate, and the judge's calls are counted apart."""
    from vlmteach_fast.testing import DarknessTeacher

    teacher, judge = BrightnessTeacher(), DarknessTeacher()
    by_teacher = best_of_n(pipe, teacher, PROMPT, image=first_frame(), n=3, sampling=SAMPLING)
    by_judge = best_of_n(pipe, teacher, PROMPT, image=first_frame(), n=3, sampling=SAMPLING, judge=judge)
    assert by_teacher.selected_by == "teacher" and by_judge.selected_by == "judge"
    worst_for_teacher = min(by_teacher.candidates, key=lambda c: c["reward"])["seed"]
    assert by_judge.candidates[0]["seed"] == worst_for_teacher != by_teacher.candidates[0]["seed"]
    picked = [c["judge_reward"] for c in by_judge.candidates]
    assert picked == sorted(picked, reverse=True) and picked == [c["selection"] for c in by_judge.candidates]
    # the returned video is the judge's pick, and its p_yes is the teacher's on it
    assert float(judge.reward(by_judge.frames, by_judge.queries).reward) == pytest.approx(picked[0], abs=1e-6)
    assert by_judge.p_yes == pytest.approx(teacher.reward(by_judge.frames, by_judge.queries).p_yes, abs=1e-6)
    assert by_judge.cost.reward_calls == 3 and by_judge.cost.judge_reward_calls == 3 and judge.calls == 3 + 1
    assert by_teacher.cost.judge_reward_calls == 0
    assert by_judge.summary()["selected_by"] == "judge"


def test_best_of_n_oracle_picks_by_the_given_score(pipe):
    from vlmteach_fast.baselines import best_of_n_oracle

    seen = []

    def darkness(frames, p_yes):  # a score the teacher disagrees with
        seen.append(len(p_yes))
        return float(1.0 - frames[0, -1].mean())

    res = best_of_n_oracle(pipe, BrightnessTeacher(), PROMPT, darkness, image=first_frame(), n=3, sampling=SAMPLING)
    assert res.method == "best_of_n_oracle" and res.selected_by == "oracle" and seen == [2, 2, 2]
    scores = [c["selection"] for c in res.candidates]
    assert scores == sorted(scores, reverse=True) and len(set(scores)) == 3
    assert darkness(res.frames, res.p_yes) == pytest.approx(scores[0], abs=1e-6)
    assert res.cost.extra["oracle_score_calls"] == 3 and res.cost.judge_reward_calls == 0


def test_run_method_routes_the_judge_and_the_oracle_and_refuses_misuse(pipe):
    from vlmteach_fast.methods import MODEL_METHODS, REFERENCE_METHODS, run_method
    from vlmteach_fast.optimization import OptimizeConfig
    from vlmteach_fast.testing import DarknessTeacher

    assert "best_of_n_oracle" in REFERENCE_METHODS and "best_of_n_oracle" not in MODEL_METHODS
    cfg = OptimizeConfig(progress=False, sampling=SAMPLING)
    res = run_method("best_of_n", pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg, n=2,
                     select_judge=DarknessTeacher())
    assert res.selected_by == "judge" and res.cost.judge_reward_calls == 2
    with pytest.raises(ValueError, match="`select_judge` picks Best-of-N's candidates: only method 'best_of_n'"):
        run_method("baseline", pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg,
                   select_judge=DarknessTeacher())
    with pytest.raises(ValueError, match="`oracle_score` must be the benchmark's score.*got NoneType"):
        run_method("best_of_n_oracle", pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg)
    with pytest.raises(ValueError, match="only 'best_of_n_oracle' takes one, got method 'best_of_n'"):
        run_method("best_of_n", pipe, BrightnessTeacher(), PROMPT, image=first_frame(), config=cfg,
                   oracle_score=lambda f, p: 0.0)
    with pytest.raises(TypeError, match="`judge` must be None .* got str"):
        best_of_n(pipe, BrightnessTeacher(), PROMPT, image=first_frame(), n=2, sampling=SAMPLING, judge="gpt")
