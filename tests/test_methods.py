"""The method registry: every method runs through run_method and returns the same MethodOutput protocol."""

import math

import pytest
import torch

from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.methods import MODEL_METHODS, MethodOutput, run_method
from vlmteach_fast.optimization import OptimizeConfig
from vlmteach_fast.teacher import RewardOutput
from vlmteach_fast.testing import GEOM, BrightnessTeacher, first_frame

PROMPT = "make the ball reach the square"
CONFIG = OptimizeConfig(max_steps=2, progress=False, sampling=SamplingConfig(final_steps=2, **GEOM))



@pytest.mark.parametrize("name", [m for m in MODEL_METHODS if m != "vlm_as_solver"])
def test_every_method_returns_the_shared_protocol(pipe, name):
    teacher = BrightnessTeacher()
    res = run_method(name, pipe, teacher, PROMPT, image=first_frame(), config=CONFIG, n=2)
    assert isinstance(res, MethodOutput)
    assert res.frames.shape == (1, GEOM["num_frames"], 3, GEOM["height"], GEOM["width"])
    # p_yes is the teacher's verdict on the returned video
    again = teacher.reward(res.frames, res.summary()["questions"]).p_yes
    assert res.p_yes == pytest.approx(again, abs=1e-5)
    assert (res.stop_reason is None) == (name != "optimize")
    samples = {"baseline": 1, "best_of_n": 2}.get(name)
    if samples is not None:  # n reaches best_of_n; the sampling config reaches every method
        assert res.cost.full_decodes == samples and res.cost.denoiser_forward == 2 * samples


def test_run_method_rejects_bad_arguments(pipe):
    with pytest.raises(ValueError, match="`name` must be one of"):
        run_method("best_of_five", pipe, BrightnessTeacher(), PROMPT)
    with pytest.raises(ValueError, match="`n` must be an int >= 1, got 0"):
        run_method("best_of_n", pipe, BrightnessTeacher(), PROMPT, n=0)
    with pytest.raises(TypeError, match="`config` must be an OptimizeConfig"):
        run_method("baseline", pipe, BrightnessTeacher(), PROMPT, config={"max_steps": 2})


def test_reward_output_p_yes_is_the_batch_mean_per_question():
    lp = torch.log(torch.tensor([[0.2, 0.9], [0.4, 0.5]]))
    out = RewardOutput(reward=lp.mean(-1), log_probs=lp, weights=torch.ones(2) / 2, questions=["a", "b"],
                       kinds=["goal", "process"])
    assert out.p_yes == pytest.approx([0.3, 0.7]) and not math.isnan(sum(out.p_yes))
