"""The toy video training script's pure parts: per-token timesteps, the sampler rollout and the motion mask."""

import torch
from bench_scripts import script_module

tv = script_module("train_toy_video")


class _ConstantVelocity(torch.nn.Module):
    """Stands in for the transformer: velocity = c everywhere, and records the timesteps it was called with."""

    def __init__(self, c: float):
        super().__init__()
        self.c, self.calls = c, []

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        self.calls.append(timestep.clone())
        return (torch.full_like(hidden_states, self.c),)


def _mask():
    mask = torch.ones(1, 1, 3, 4, 4)
    mask[:, :, 0] = 0
    return mask


def test_token_timesteps_zero_on_first_frame():
    ts = tv.token_timesteps(_mask(), torch.tensor([0.5, 1.0]))
    assert ts.shape == (2, 3 * 2 * 2)
    assert (ts[:, :4] == 0).all() and (ts[0, 4:] == 500).all() and (ts[1, 4:] == 1000).all()


def test_rollout_follows_euler_steps_and_keeps_the_noise_identity():
    g = torch.Generator().manual_seed(0)
    b = 6
    x0, eps = torch.randn(b, 2, 3, 4, 4, generator=g), torch.randn(b, 2, 3, 4, 4, generator=g)
    sigma = torch.rand(b, generator=g)
    xt = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * eps
    sampler_sigmas = torch.tensor([1.0, 0.858, 0.602, 0.009])
    model = _ConstantVelocity(0.25)
    new_xt, new_sigma, new_eps = tv.rollout(model, xt, sigma, eps, x0, torch.zeros(b, 5, 8), _mask(), sampler_sigmas,
                                            1.0, torch.Generator().manual_seed(1))
    k = len(model.calls)
    assert k in (1, 2)  # stops at sampler sigma 0.858 or 0.602
    sk = sampler_sigmas[k]
    assert torch.allclose(new_sigma, sk.expand(b))
    # Euler from the noise with a constant velocity: x = eps + (sigma_k - 1) c.
    torch.testing.assert_close(new_xt, eps + (sk - 1) * 0.25)
    # The returned eps makes xt = (1 - sigma) x0 + sigma eps, so the loss target eps - x0 reaches x0 in one step.
    torch.testing.assert_close(new_xt, (1 - sk) * x0 + sk * new_eps)
    assert (model.calls[0][:, 16:] == 1000).all()  # the first call is at sigma 1


def test_rollout_share_zero_changes_nothing():
    x = torch.randn(3, 2, 3, 4, 4)
    sigma = torch.tensor([0.1, 0.5, 0.9])
    model = _ConstantVelocity(1.0)
    out = tv.rollout(model, x, sigma, x, x, torch.zeros(3, 5, 8), _mask(), torch.tensor([1.0, 0.8, 0.5, 0.01]), 0.0,
                     torch.Generator().manual_seed(0))
    assert out[0] is x and out[1] is sigma and not model.calls


def test_motion_cells_marks_moving_cells_per_latent_frame():
    videos = torch.zeros(1, 9, 3, 8, 8)
    videos[0, 3:, 0, 0:4, 4:8] = 1.0  # one 4-px cell changes from pixel frame 3 on
    m = tv.motion_cells(videos, temporal=1)
    assert m.shape == (1, 1, 9, 2, 2)
    assert m[0, 0, :, 0, 1].tolist() == [0, 0, 0, 1, 1, 1, 1, 1, 1] and m[0, 0, :, 1].sum() == 0
    m4 = tv.motion_cells(videos, temporal=4)  # latent frame 1 stands for pixel frames 1-4
    assert m4[0, 0, :, 0, 1].tolist() == [0, 1, 1]
