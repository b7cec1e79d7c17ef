"""One-step prediction and short sampling work with the scheduler configs real checkpoints ship (tests/data).

Each family's tiny pipeline gets the released checkpoint's scheduler (built with ``from_config``, as
``from_pretrained`` does); the one-step estimate, a 1-step and a 4-step sample must all be finite, and multi-step
schedules must stay exactly the scheduler's own.
"""

import copy
import json
import os

import pytest
import torch

from vlmteach_fast.reasoner import Reasoner

DATA = os.path.join(os.path.dirname(__file__), "data", "scheduler_configs")


def _scheduler(name):
    import diffusers

    with open(os.path.join(DATA, name)) as f:
        cfg = json.load(f)
    return getattr(diffusers, cfg["_class_name"]).from_config(cfg)


def _build(family):
    from vlmteach_fast import testing as tiny

    if family == "ltx":
        return tiny.tiny_ltx_i2v_pipeline(), dict(num_frames=9, height=32, width=32)
    if family == "cogvideox":
        return tiny.tiny_cogvideox_i2v_pipeline(), dict(num_frames=9, height=16, width=16, max_sequence_length=16)
    return tiny.tiny_wan_pipeline(family.split(":")[1]), dict(num_frames=5, height=32, width=32)


CASES = [("ltx", "ltx_video.json"), ("wan:ti2v", "wan2.2_ti2v_5b.json"), ("wan:i2v", "wan2.1_i2v_480p.json"),
         ("cogvideox", "cogvideox_5b_i2v.json")]


@pytest.mark.parametrize("family,config", CASES, ids=[c for _, c in CASES])
def test_one_step_and_short_sampling_are_finite_with_the_released_scheduler(family, config):
    pipe, geom = _build(family)
    pipe.scheduler = _scheduler(config)
    r = Reasoner.from_pipeline(pipe)
    image = torch.rand(3, geom["height"], geom["width"], generator=torch.Generator().manual_seed(0))  # (3, H, W)
    prep = r.prepare("move the ball", image, **geom)
    pred = r.predict(prep)  # the default optimization-time prediction
    assert torch.isfinite(pred.latents).all()
    pred.latents.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in r.lora_parameters() if p.grad is not None)
    for steps in (1, 4):
        frames = r.sample(prep, steps=steps).frames
        assert torch.isfinite(frames).all(), f"{steps}-step sample is not finite"


def test_ltx_one_step_starts_from_pure_noise_and_multi_step_keeps_the_terminal_stretch():
    pipe, geom = _build("ltx")
    pipe.scheduler = _scheduler("ltx_video.json")
    r = Reasoner.from_pipeline(pipe)
    prep = r.prepare("move the ball", torch.rand(3, 32, 32), **geom)
    _, coeffs = r.family.schedule(1, prep)
    assert coeffs.tolist() == [[1.0, 0.0]]  # x0 = x - 1 * v from pure noise, as without the stretch
    # 4 steps: exactly the scheduler's own schedule, which ends at shift_terminal before 0
    _, coeffs4 = r.family.schedule(4, prep)
    sched = copy.deepcopy(pipe.scheduler)
    sched.set_timesteps(device="cpu", **r.family.scheduler_kwargs(4, prep))
    assert torch.equal(coeffs4[:, 0], sched.sigmas[:-1].float())
    assert coeffs4[-1, 0].item() == pytest.approx(0.1)
    assert pipe.scheduler.config.shift_terminal == 0.1  # the pipeline's own scheduler is untouched


def test_optimize_runs_on_ltx_with_its_released_scheduler():
    """The default one-step ``optimize`` on LTX-Video's scheduler: every step is a real (finite) step."""
    from vlmteach_fast.testing import BrightnessTeacher
    from vlmteach_fast.instance import SamplingConfig
    from vlmteach_fast.optimization import OptimizeConfig, optimize
    from vlmteach_fast.reasoner import LightDecoderConfig, LoRASpec

    pipe, geom = _build("ltx")
    pipe.scheduler = _scheduler("ltx_video.json")
    cfg = OptimizeConfig(max_steps=2, patience=100, progress=False, lora=LoRASpec(rank=2),
                         decoder=LightDecoderConfig(kind="full"), sampling=SamplingConfig(final_steps=2, **geom))
    res = optimize(pipe, BrightnessTeacher(), "make it bright", image=torch.rand(3, 32, 32), config=cfg)
    assert [h.skipped for h in res.history] == [False, False]
    assert all(torch.isfinite(torch.tensor(h.p_yes)).all() for h in res.history)
    assert torch.isfinite(res.frames).all()
