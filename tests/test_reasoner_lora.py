"""The reasoner's LoRA: PEFT-format files a stock diffusers pipeline loads, reset / snapshot / restore, the spec."""

import os

import numpy as np
import pytest
import torch
from PIL import Image

from vlmteach_fast.reasoner import LoRASpec, Reasoner
from vlmteach_fast.testing import tiny_wan_pipeline

GEOM = dict(num_frames=9, height=32, width=32)
SEQ = 16


def _image():
    return Image.fromarray((np.random.RandomState(0).rand(32, 32, 3) * 255).astype("uint8"))


def _train_a_little(r, prep, steps=2, lr=1e-2):
    # A few real optimizer steps on an arbitrary differentiable loss, so the adapter is what an optimization would
    # leave behind (lora_A and lora_B both moved), not a hand-set tensor. Adam moves every parameter by ~lr per
    # step whatever the (tiny, random-model) gradient scale is, so each call visibly changes the output.
    opt = torch.optim.Adam(r.lora_parameters(), lr=lr)
    gen = torch.Generator().manual_seed(7)
    lora = r.named_lora_parameters()
    if all(float(p.detach().abs().max()) == 0 for n, p in lora.items() if ".lora_B." in n):
        with torch.no_grad():  # fresh adapter: lora_B = 0 would leave lora_A without gradient on the first step
            for n, p in lora.items():
                if ".lora_B." in n:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    for _ in range(steps):
        opt.zero_grad()
        frames = r.decode(r.predict(prep).latents)
        (1.0 - frames[:, -1, 0]).mean().backward()  # "make the last frame red"
        opt.step()


@pytest.mark.parametrize("variant", ["t2v", "i2v"])
def test_saved_adapter_loads_into_a_fresh_stock_pipeline(tmp_path, variant):
    # alpha != rank on purpose: without the LoRA config in the file's metadata diffusers would load it with the
    # wrong scale, silently (docs/architecture.md).
    r = Reasoner.from_pipeline(tiny_wan_pipeline(variant), LoRASpec(rank=4, alpha=12, include_ffn=True, fused=False))
    image = _image() if variant != "t2v" else None
    prep = r.prepare("a ball", image=image, seed=2, max_sequence_length=SEQ, **GEOM)
    base = r.sample(prep, steps=2).frames
    _train_a_little(r, prep)
    ours = r.sample(prep, steps=2).frames
    assert float((ours - base).abs().max()) > 1e-3  # the adapter changes the video, so the comparison below bites

    out = r.save_adapter(tmp_path / "adapter")
    assert sorted(os.listdir(out)) == ["adapter_config.json", "manifest.json", "pytorch_lora_weights.safetensors"]
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".lora-")]  # no temp dirs left behind

    fresh = tiny_wan_pipeline(variant)  # same seed -> same frozen weights, no LoRA
    fresh.load_lora_weights(out)
    fresh.transformer.eval()
    kw = dict(image=image) if image is not None else {}
    stock = fresh(prompt="a ball", latents=prep.noise.clone(), num_inference_steps=2, guidance_scale=1.0,
                  output_type="pt", max_sequence_length=SEQ, **GEOM, **kw).frames
    # Same float32 computation on the same weights; 1e-5 covers op-order rounding (measured ~1e-7).
    torch.testing.assert_close(stock, ours, rtol=0, atol=1e-5)

    # And through our own reasoner on the fresh pipeline: the loaded adapter is the only one, our new one is zero.
    r2 = Reasoner.from_pipeline(fresh, LoRASpec(rank=2, fused=False, adapter_name="fresh"))
    torch.testing.assert_close(r2.sample(r2.prepare("a ball", image=image, seed=2, max_sequence_length=SEQ, **GEOM),
                                         steps=2).frames, ours, rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", ["cogvideox", "ltx"])
def test_saved_adapter_round_trip_other_families(tmp_path, family):
    # Each family's pipeline class has its own LoRA loader mixin; the file must load through the stock call.
    from vlmteach_fast.testing import tiny_cogvideox_i2v_pipeline, tiny_ltx_i2v_pipeline

    build = tiny_cogvideox_i2v_pipeline if family == "cogvideox" else tiny_ltx_i2v_pipeline
    size = 16 if family == "cogvideox" else 32
    image = Image.fromarray((np.random.RandomState(0).rand(size, size, 3) * 255).astype("uint8"))
    geom = dict(num_frames=9, height=size, width=size)
    r = Reasoner.from_pipeline(build(), LoRASpec(rank=4, alpha=2, fused=False))
    prep = r.prepare("a ball", image=image, seed=2, max_sequence_length=SEQ, **geom)
    _train_a_little(r, prep)
    ours = r.sample(prep, steps=2).frames
    fresh = build()
    fresh.load_lora_weights(r.save_adapter(tmp_path / "adapter"))
    fresh.transformer.eval()
    stock = fresh(image=image, prompt="a ball", num_inference_steps=2, guidance_scale=1.0, output_type="pt",
                  generator=torch.Generator().manual_seed(2), max_sequence_length=SEQ, **geom).frames
    torch.testing.assert_close(stock, ours, rtol=0, atol=1e-5)  # CogVideoX's DDIM op order: measured 2.4e-6


def test_save_replaces_an_existing_adapter_atomically(tmp_path):
    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, fused=False))
    d = tmp_path / "a"
    r.save_adapter(d)
    first = (d / "pytorch_lora_weights.safetensors").read_bytes()
    with torch.no_grad():
        r.lora_parameters()[1].add_(1.0)
    r.save_adapter(d)
    assert (d / "pytorch_lora_weights.safetensors").read_bytes() != first
    assert sorted(os.listdir(tmp_path)) == ["a"]


@pytest.fixture(scope="module")
def t2v():
    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=4, fused=False))
    prep = r.prepare("a ball", seed=1, max_sequence_length=SEQ, **GEOM)
    return r, prep


def test_reset_gives_the_frozen_model_back(t2v):
    r, prep = t2v
    r.reset_lora()
    base = r.predict(prep).latents.detach()
    _train_a_little(r, prep)
    assert float((r.predict(prep).latents.detach() - base).abs().max()) > 1e-4
    r.reset_lora()
    assert all(p.grad is None for p in r.lora_parameters())
    torch.testing.assert_close(r.predict(prep).latents.detach(), base, rtol=0, atol=0)
    # A seeded reset re-draws lora_A reproducibly; lora_B = 0 keeps the output equal to the frozen model's.
    r.reset_lora(seed=11)
    a1 = r.snapshot_lora()
    r.reset_lora(seed=11)
    a2 = r.snapshot_lora()
    r.reset_lora(seed=12)
    a3 = r.snapshot_lora()
    assert all(torch.equal(a1[k], a2[k]) for k in a1)
    assert any(not torch.equal(a1[k], a3[k]) for k in a1 if ".lora_A." in k)
    torch.testing.assert_close(r.predict(prep).latents.detach(), base, rtol=0, atol=0)


def test_snapshot_and_restore_keep_the_best_adapter(t2v):
    r, prep = t2v
    r.reset_lora()
    _train_a_little(r, prep, steps=1)
    best = r.snapshot_lora()
    best_out = r.predict(prep).latents.detach()
    _train_a_little(r, prep, steps=2)
    assert float((r.predict(prep).latents.detach() - best_out).abs().max()) > 1e-4
    params_before = [id(p) for p in r.lora_parameters()]
    r.restore_lora(best)
    assert [id(p) for p in r.lora_parameters()] == params_before  # in place: an optimizer keeps working
    torch.testing.assert_close(r.predict(prep).latents.detach(), best_out, rtol=0, atol=0)
    bad = dict(best)
    bad.pop(next(iter(bad)))
    with pytest.raises(ValueError, match="snapshot.*does not match"):
        r.restore_lora(bad)


@pytest.mark.parametrize("fused", [False, True])
def test_bypassed_adapter_is_the_frozen_model_and_comes_back(fused):
    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=4, fused=fused))
    prep = r.prepare("a ball", seed=1, max_sequence_length=SEQ, **GEOM)
    base = r.predict(prep).latents.detach()
    _train_a_little(r, prep)
    trained = r.predict(prep).latents.detach()
    assert float((trained - base).abs().max()) > 1e-4
    with r.lora_bypassed():
        torch.testing.assert_close(r.predict(prep).latents.detach(), base, rtol=0, atol=1e-6)
    # on exit the adapter is back, trainable as before
    torch.testing.assert_close(r.predict(prep).latents.detach(), trained, rtol=0, atol=1e-6)
    assert all(p.requires_grad for p in r.lora_parameters())


def test_fused_option_never_breaks_the_reasoner(t2v, tmp_path):
    # fused=True uses vlmteach_fast.nn.fuse_peft_lora when it exists, else stays plain PEFT; either way the outputs
    # must equal plain PEFT's (same weights). Fused kernels accumulate in fp32 in another order: 1e-5.
    r_plain, prep = t2v
    r_plain.reset_lora()
    r_fused = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=4, fused=True))
    r_fused.restore_lora(r_plain.snapshot_lora())
    got = r_fused.predict(r_fused.prepare("a ball", seed=1, max_sequence_length=SEQ, **GEOM)).latents
    torch.testing.assert_close(got.detach(), r_plain.predict(prep).latents.detach(), rtol=0, atol=1e-5)
    got.mean().backward()
    assert all(p.grad is not None for p in r_fused.lora_parameters())
    # Fused layers keep PEFT's state-dict keys, so the saved file is the plain-PEFT file.
    from safetensors.torch import load_file

    r_plain.save_adapter(tmp_path / "plain")
    r_fused.save_adapter(tmp_path / "fused")
    a = load_file(tmp_path / "plain" / "pytorch_lora_weights.safetensors")
    b = load_file(tmp_path / "fused" / "pytorch_lora_weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank=0), "rank.*>= 1.*got 0"),
        (dict(rank=2.0), "rank.*int"),
        (dict(alpha=-1.0), "alpha.*> 0"),
        (dict(target_modules=[]), "target_modules"),
        (dict(adapter_name="a.b"), "adapter_name"),
    ],
)
def test_lora_spec_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRASpec(**kwargs)


def test_spec_defaults_and_targets():
    s = LoRASpec(rank=8)
    assert s.alpha == 8.0 and s.target_modules is None
    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, target_modules=("attn1.to_q",),
                                                                   fused=False))
    names = list(r.named_lora_parameters())
    assert len(names) == 2 * 2 and all("attn1.to_q" in n for n in names)
    with pytest.raises(ValueError, match="matched no linear layer"):
        Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(target_modules=("nope",), fused=False))


def test_fresh_adapter_is_the_same_in_every_process():
    # lora_A is drawn from init_seed, not from the global RNG: two processes (here: two global RNG states) start
    # from the same adapter, so the same seeds give the same optimization run
    from vlmteach_fast.testing import tiny_ti2v_pipeline

    def fresh(global_seed, init_seed):
        pipe = tiny_ti2v_pipeline()
        torch.manual_seed(global_seed)
        return Reasoner.from_pipeline(pipe, LoRASpec(rank=2, init_seed=init_seed)).snapshot_lora()

    a, b = fresh(1, 0), fresh(2, 0)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    c, d = fresh(1, None), fresh(2, None)
    assert any(not torch.equal(c[k], d[k]) for k in c if ".lora_A." in k)
    with pytest.raises(ValueError, match="init_seed"):
        LoRASpec(init_seed=-1)
