"""The denoiser's attention backend knob: validated names, applied through diffusers' dispatcher in every denoising
step, including a checkpointed step's recomputation in the backward pass."""

import pytest
import torch

from vlmteach_fast.instance import SamplingConfig, setup_instance
from vlmteach_fast.reasoner import LoRASpec, Reasoner
from vlmteach_fast.reasoner.attention import attention_backend_available, attention_backend_names
from vlmteach_fast.testing import tiny_wan_pipeline

dispatch = pytest.importorskip("diffusers.models.attention_dispatch")
GEOM = dict(num_frames=5, height=16, width=16)


def _active() -> str:
    return dispatch._AttentionBackendRegistry.get_active_backend()[0].value


@pytest.fixture(scope="module")
def reasoner():
    return Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=4))


def _record(reasoner):
    seen = []
    block = reasoner.transformer.blocks[0]
    handle = block.register_forward_pre_hook(lambda m, a: seen.append(_active()))
    return seen, handle


def test_names_are_checked():
    with pytest.raises(ValueError, match="attention_backend.*'no_such_kernel'"):
        SamplingConfig(attention_backend="no_such_kernel")
    assert SamplingConfig().attention_backend == "native"
    assert "native" in attention_backend_names()
    assert not any(n.endswith("_hub") for n in attention_backend_names())  # nothing downloads kernels


def test_backend_used_in_forward_and_checkpoint_recompute(reasoner):
    prep = reasoner.prepare("a ball", seed=0, max_sequence_length=16, **GEOM)
    reasoner.reset_lora(seed=1)
    before = _active()
    reasoner.set_attention_backend("_native_math")
    seen, handle = _record(reasoner)
    try:
        out = reasoner.predict(prep, mode="k_step", steps=2, grad_steps=2, checkpoint=True).latents
        n_forward = len(seen)
        out.square().mean().backward()
    finally:
        handle.remove()
        reasoner.set_attention_backend("native")
    assert n_forward == 2 and len(seen) == 4  # two steps, each recomputed once in the backward pass
    assert seen == ["_native_math"] * 4
    assert _active() == before  # the context is left after each step
    assert all(p.grad is not None for p in reasoner.lora_parameters())


def test_math_backend_matches_native(reasoner):
    prep = reasoner.prepare("a ball", seed=0, max_sequence_length=16, **GEOM)
    with torch.no_grad():
        ref = reasoner.predict(prep).latents
        reasoner.set_attention_backend("_native_math")
        try:
            got = reasoner.predict(prep).latents
        finally:
            reasoner.set_attention_backend("native")
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


def test_unusable_backend_fails_with_reason(reasoner):
    ok, why = attention_backend_available("flash")
    if ok:
        pytest.skip("flash-attn is installed here")
    with pytest.raises(RuntimeError, match="'flash' cannot be used here"):
        reasoner.set_attention_backend("flash")
    assert reasoner.attention_backend == "native"


class _Teacher:
    def synthesize_queries(self, *a, **k):
        raise AssertionError("queries are given")

    def reward(self, *a, **k):
        raise AssertionError("not called by setup_instance")


def test_setup_instance_applies_sampling_backend(reasoner):
    sampling = SamplingConfig(attention_backend="_native_math", max_sequence_length=16, **GEOM)
    try:
        setup = setup_instance(reasoner, _Teacher(), "a ball", queries=["Is it there?"], sampling=sampling)
        assert setup.reasoner.attention_backend == "_native_math"
    finally:
        reasoner.set_attention_backend("native")
