"""One-step and k-step gradients w.r.t. the LoRA, checked against oracles that do not share ``Reasoner.predict``'s
loop: central finite differences (the whole function, all steps carrying gradient) and a hand-unrolled loop built
from the family's pieces (schedule, denoise, step) with plain autograd, no checkpointing (the truncated k-step
gradient, first T - K steps without gradient). Each oracle is shown to catch a cut gradient between steps and a
checkpoint that drops the gradient; a separate check catches a checkpoint that does not recompute (a no-op).

Tiny Wan text-to-video, 5 frames, 32 x 32: each prediction takes a few ms.
"""

import pytest
import torch

import vlmteach_fast.reasoner.reasoner as reasoner_module
from vlmteach_fast.reasoner import LoRASpec, Reasoner
from vlmteach_fast.testing import tiny_wan_pipeline, unrolled_latents


@pytest.fixture(scope="module")
def setup():
    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, alpha=2, fused=False))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # random lora_B too, so every LoRA parameter gets a gradient
        for name, p in r.named_lora_parameters().items():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    prep = r.prepare("a red ball rolls", seed=3, num_frames=5, height=32, width=32, max_sequence_length=16)
    weight = torch.randn(r.predict(prep).latents.shape, generator=gen)
    return r, prep, weight


def _loss(latents, weight):
    return (latents * weight).sum()


def _predict_grads(r, prep, weight, **kw):
    params = r.lora_parameters()
    loss = _loss(r.predict(prep, **kw).latents, weight)
    if not loss.requires_grad:  # a mutation removed every path to the LoRA
        return [torch.zeros_like(p) for p in params]
    return list(torch.autograd.grad(loss, params))


def _unrolled_grads(r, prep, weight, steps, grad_steps):
    """The oracle loop: ``testing.unrolled_latents`` (first T - K steps without gradient, no checkpoint)."""
    params = r.lora_parameters()
    return list(torch.autograd.grad(_loss(unrolled_latents(r, prep, steps, grad_steps), weight), params))


def _finite_difference(r, prep, weight, direction, h, **kw):
    """Central difference of the loss along ``direction`` (one tensor per LoRA parameter)."""
    params = r.lora_parameters()
    values = []
    with torch.no_grad():
        for sign in (1.0, -1.0):
            for p, d in zip(params, direction):
                p.add_(sign * h * d)
            values.append(float(_loss(r.predict(prep, **kw).latents, weight)))
            for p, d in zip(params, direction):
                p.sub_(sign * h * d)
    return (values[0] - values[1]) / (2 * h)


def _dot(grads, direction):
    return float(sum((g * d).sum() for g, d in zip(grads, direction)))


def _cut_between_steps(monkeypatch):
    """Mutation: every step's input latents detached, so only the last step's gradient survives."""
    orig = Reasoner._one_step
    monkeypatch.setattr(Reasoner, "_one_step", lambda self, prep, lat, *a, **k: orig(self, prep, lat.detach(), *a, **k))


def _checkpoint_without_gradient(monkeypatch):
    """Mutation: checkpointed steps run without autograd (a checkpoint that never recomputes for backward)."""
    def no_grad_checkpoint(fn, *args, use_reentrant):
        with torch.no_grad():
            return fn(*args)

    monkeypatch.setattr(reasoner_module, "_checkpoint", no_grad_checkpoint)


CASES = [dict(mode="one_step"), dict(mode="k_step", steps=3, grad_steps=3)]


@pytest.mark.parametrize("kw", CASES, ids=["one_step", "k_step_all_3"])
def test_gradient_matches_central_finite_differences(setup, kw, monkeypatch):
    r, prep, weight = setup
    gen = torch.Generator().manual_seed(1)
    grads = _predict_grads(r, prep, weight, **kw)
    # Measured relative gap along unit directions, float32: <= 7e-4 at h = 0.1 (at h = 1e-2 / 1e-3 float32 rounding
    # of the loss dominates: up to 3e-3 / 2e-2). rel 5e-3 is 7x the measured gap.
    for k in range(3):
        direction = [torch.randn(g.shape, generator=gen) for g in grads]
        norm = sum(float(d.square().sum()) for d in direction) ** 0.5
        direction = [d / norm for d in direction]
        fd = _finite_difference(r, prep, weight, direction, 0.1, **kw)
        assert _dot(grads, direction) == pytest.approx(fd, rel=5e-3, abs=1e-4), k
    if kw["mode"] == "k_step":  # the oracle catches both mutations
        for mutate in (_cut_between_steps, _checkpoint_without_gradient):
            with monkeypatch.context() as m:
                mutate(m)
                bad = _predict_grads(r, prep, weight, **kw)
            assert _dot(bad, direction) != pytest.approx(fd, rel=5e-3, abs=1e-4), mutate.__name__


@pytest.mark.parametrize("steps,grad_steps,checkpoint", [(1, 1, False), (4, 1, None), (4, 2, True), (4, 3, True),
                                                        (4, 3, "all_but_last"), (4, 4, True)])
def test_k_step_gradient_matches_a_hand_unrolled_loop(setup, steps, grad_steps, checkpoint, monkeypatch):
    r, prep, weight = setup
    kw = dict(mode="k_step", steps=steps, grad_steps=grad_steps, checkpoint=checkpoint)
    expected = _unrolled_grads(r, prep, weight, steps, grad_steps)
    got = _predict_grads(r, prep, weight, **kw)
    assert float(sum(g.abs().sum() for g in expected)) > 0
    for g, e in zip(got, expected):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-7)  # same kernels, same inputs: float32 rounding
    if grad_steps > 1:
        mutations = [_cut_between_steps] + ([_checkpoint_without_gradient] if checkpoint else [])
        for mutate in mutations:
            with monkeypatch.context() as m:
                mutate(m)
                bad = _predict_grads(r, prep, weight, **kw)
            gap = max(float((b - e).abs().max()) for b, e in zip(bad, expected))
            scale = max(float(e.abs().max()) for e in expected)
            assert gap > 1e-3 * scale, mutate.__name__


def test_checkpointed_steps_are_recomputed_in_backward(setup, monkeypatch):
    """A checkpoint made a no-op (a plain call) gives the same gradients but keeps every step's activations: the
    sign is that backward re-runs no denoiser call. With K = 3 and checkpointing, backward re-runs all 3 steps."""
    r, prep, weight = setup
    calls = []
    handle = r.transformer.register_forward_pre_hook(lambda m, i: calls.append(torch.is_grad_enabled()))
    try:
        def recomputed():
            calls.clear()
            out = r.predict(prep, mode="k_step", steps=4, grad_steps=3, checkpoint=True)
            n = len(calls)
            _loss(out.latents, weight).backward()
            return len(calls) - n

        assert recomputed() == 3
        monkeypatch.setattr(reasoner_module, "_checkpoint", lambda fn, *args, use_reentrant: fn(*args))
        assert recomputed() == 0  # the no-op is visible
    finally:
        handle.remove()
