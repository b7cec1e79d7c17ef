"""The LoRA optimizers: NormalizedSGD moves along the gradient with AdamW's first-step length."""

import math

import pytest
import torch

from vlmteach_fast.optim import NormalizedSGD, lr_factor, make_optimizer
from vlmteach_fast.optimization import OptimizeConfig


def _params_with_grads():
    a, b = torch.zeros(3, 4, requires_grad=True), torch.zeros(5, requires_grad=True)
    a.grad, b.grad = torch.randn(3, 4, generator=torch.Generator().manual_seed(0)), torch.full((5,), 1e-9)
    return a, b


def test_normalized_sgd_steps_along_the_gradient_with_sign_step_length():
    a, b = _params_with_grads()
    ga, gb = a.grad.clone(), b.grad.clone()
    NormalizedSGD([a, b], lr=0.1).step()
    g = torch.cat([ga.flatten(), gb.flatten()])
    step = -torch.cat([a.detach().flatten(), b.detach().flatten()])
    torch.testing.assert_close(step.norm(), torch.tensor(0.1 * math.sqrt(17)))  # an lr sign step's length
    torch.testing.assert_close(step / step.norm(), g / g.norm())  # the gradient's direction
    assert b.detach().abs().max() < 1e-6  # a noise-sized gradient barely moves (AdamW would move it by lr)


def test_adamw_first_step_is_a_sign_step_for_contrast():
    a, b = _params_with_grads()
    make_optimizer("adamw", [a, b], lr=0.1).step()
    torch.testing.assert_close(b.detach().abs(), torch.full((5,), 0.1 * 1e-9 / (1e-9 + 1e-8)))
    assert torch.allclose(a.detach().abs(), torch.full((3, 4), 0.1), atol=1e-6)


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="OptimizeConfig.optimizer"):
        OptimizeConfig(optimizer="sgd")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        make_optimizer("lion", [torch.zeros(1, requires_grad=True)], lr=0.1)


@pytest.mark.parametrize("schedule, expected", [
    ("constant", [1.0, 1.0, 1.0, 1.0]),
    ("linear", [1.0, 0.75, 0.5, 0.25, 0.25]),  # past the planned updates it stays at the end factor
    ("cosine", [1.0, 0.25 + 0.75 * 0.75, 0.25 + 0.75 * 0.25, 0.25]),  # 0.5 (1 + cos(pi u / 3)) = 1, .75, .25, 0
])
def test_lr_factor_decays_from_one_to_the_end_over_the_planned_updates(schedule, expected):
    got = [lr_factor(schedule, u, 4, end=0.25) for u in range(len(expected))]
    assert got == pytest.approx(expected)


def test_lr_factor_scales_the_first_update_only_and_names_bad_schedules():
    assert [lr_factor("linear", u, 3, end=0.5, first=2.0) for u in range(3)] == pytest.approx([2.0, 0.75, 0.5])
    assert lr_factor("cosine", 0, 1, end=0.1) == 1.0  # one planned update: no decay
    with pytest.raises(ValueError, match="OptimizeConfig.lr_schedule"):
        OptimizeConfig(lr_schedule="step")
    with pytest.raises(ValueError, match="lr_end"):
        OptimizeConfig(lr_end=0.0)
