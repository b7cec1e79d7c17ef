"""The loop's reward must be true of the final video: a red-rewarding oracle on the shipped toy model.

With the linear latent->RGB map in the loop this run reached P(yes) >= 0.9 on the light decode after 2 steps and
stopped, while the final (full-decode) video stayed at 0.03-0.10 (bench/RESULTS.md, "Light decoders"). With the
default decoder (the shipped tiny decoder distilled from the toy VAE) the final video follows.
"""

import pytest
import torch

from vlmteach_fast.instance import SamplingConfig
from vlmteach_fast.optimization import OptimizeConfig, optimize
from vlmteach_fast.toy import NUM_FRAMES, SAMPLE_STEPS, SIZE, make_instances
from vlmteach_fast.toy.models import load_pipeline
from vlmteach_fast.toy.oracle import RedOracle


def test_red_oracle_scores_red_frames():
    oracle = RedOracle()
    red = torch.zeros(1, 2, 3, 4, 4)
    red[:, :, 0] = 1
    blue = red.flip(2)
    black = torch.zeros(1, 2, 3, 4, 4)
    p = oracle.p_yes(torch.cat([red, black, blue]))
    assert p[0] > 0.99 and abs(float(p[1]) - float(torch.sigmoid(torch.tensor(-3.5)))) < 1e-6 and p[2] < 1e-3
    out = oracle.reward(red, oracle.synthesize_queries("anything"))
    assert out.log_probs.shape == (1, 1) and torch.allclose(out.reward, out.log_probs[:, 0])


@pytest.mark.parametrize("seed", [0, 1])
def test_red_oracle_final_video_follows_the_loop_with_the_default_decoder(seed):
    inst = make_instances(1, seed=0, split="test")[0]
    cfg = OptimizeConfig(lr=2e-2, progress=False,  # the default OptimizeConfig otherwise
                         sampling=SamplingConfig(num_frames=NUM_FRAMES, height=SIZE, width=SIZE,
                                                 final_steps=SAMPLE_STEPS, seed=seed))
    res = optimize(load_pipeline(), RedOracle(), inst.prompt, image=inst.first_frame, config=cfg)
    decoders = list(res.reasoner._light_decoders.values())
    assert [d.kind for d in decoders] == ["tiny"]  # kind="auto" found the shipped decoder for the toy VAE
    assert res.initial_p_yes[0] < 0.1
    assert res.final_p_yes[0] >= 0.5, (res.stop_reason, [h.p_yes for h in res.history], res.final_p_yes)
    fid = res.cost.extra["light_decoder"]  # measured on the first prediction, recorded in the cost
    assert fid["kind"] == "tiny" and fid["faithful"] and fid["n_candidates"] == 1


def test_an_unfaithful_decoder_is_reported_once_with_its_numbers(tmp_path):
    import warnings

    from vlmteach_fast.reasoner import LightDecoderConfig

    inst = make_instances(1, seed=0, split="test")[0]
    pipe = load_pipeline()
    cfg = OptimizeConfig(lr=2e-2, progress=False, decoder=LightDecoderConfig(kind="linear", cache_dir=str(tmp_path)),
                         sampling=SamplingConfig(num_frames=NUM_FRAMES, height=SIZE, width=SIZE,
                                                 final_steps=SAMPLE_STEPS, seed=0))
    with pytest.warns(UserWarning, match=r"optimize: light decoder 'linear': PSNR \d+\.\d dB.*below 25 dB.*kind='tiny'"):
        res = optimize(pipe, RedOracle(), inst.prompt, image=inst.first_frame, config=cfg)
    fid = res.cost.extra["light_decoder"]
    assert fid["kind"] == "linear" and not fid["faithful"] and fid["psnr_db"] < 25
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same reasoner and decoder: measured once, warned once
        again = optimize(pipe, RedOracle(), inst.prompt, image=inst.first_frame, config=cfg)
    assert again.cost.extra["light_decoder"] == fid
