"""The shipped toy light decoder: found by kind="auto" for the toy VAE only, faithful on held-out model latents, and
refused by a VAE of another shape."""

import pytest
import torch

from vlmteach_fast.reasoner import LightDecoder, LightDecoderConfig, LoRASpec, Reasoner
from vlmteach_fast.reasoner.fidelity import MIN_FAITHFUL_PSNR_DB
from vlmteach_fast.toy import NUM_FRAMES, SIZE, make_instances
from vlmteach_fast.toy.models import TOY_LIGHT_DECODER, TOY_LIGHT_DECODER_CONFIG, load_pipeline


@pytest.fixture(scope="module")
def toy():
    r = Reasoner.from_pipeline(load_pipeline())
    lat = []
    with torch.no_grad():
        for i, inst in enumerate(make_instances(3, seed=0, split="test")):
            prep = r.prepare(inst.prompt, inst.first_frame, num_frames=NUM_FRAMES, height=SIZE, width=SIZE, seed=i)
            lat.append(r.predict(prep).latents)  # the loop's one-step predictions on held-out instances
    return r, torch.cat(lat)


def test_auto_picks_the_shipped_decoder_and_it_is_faithful(toy, tmp_path):
    r, z = toy
    ld = LightDecoder(r, LightDecoderConfig())
    assert ld.kind == "tiny" and ld.source == TOY_LIGHT_DECODER
    assert ld.tiny.config == TOY_LIGHT_DECODER_CONFIG
    fid = ld.measure_fidelity(z)
    # Measured (bench/RESULTS.md): 32 dB on one-step predictions of 12 test instances; the threshold is the line.
    assert fid.faithful and fid.psnr_db >= MIN_FAITHFUL_PSNR_DB + 5, fid
    linear = LightDecoder(r, LightDecoderConfig(kind="linear", cache_dir=str(tmp_path)))
    assert not linear.measure_fidelity(z).faithful  # the threshold separates the two (linear: ~10 dB here)


def test_auto_does_not_use_it_for_another_vae(tmp_path):
    from vlmteach_fast.testing import tiny_wan_pipeline

    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, fused=False))
    with pytest.warns(UserWarning, match="no trained tiny decoder"):
        ld = LightDecoder(r, LightDecoderConfig(cache_dir=str(tmp_path), fit_samples=2, fit_latent_size=4))
    assert ld.kind == "linear"
    # Asked for explicitly, it is refused by shape: the tiny Wan VAE compresses 8x, the toy decoder upsamples 4x.
    with pytest.raises(ValueError, match="upsamples 4x in space.*8x spatial"):
        LightDecoder(r, LightDecoderConfig(kind="tiny", path=TOY_LIGHT_DECODER))
