"""LightDecoder (linear fit + cache, tiny AE, full VAE), frame selection and video export."""

import os
import types

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmteach_fast.reasoner import LightDecoder, LightDecoderConfig, LoRASpec, Reasoner, export_video, psnr
from vlmteach_fast.reasoner import select_latent_frames
from vlmteach_fast.testing import tiny_wan_pipeline

SMALL_FIT = dict(fit_samples=2, fit_latent_frames=3, fit_latent_size=4)  # 2 tiny-VAE decodes of 9 x 32 x 32


@pytest.fixture(scope="module")
def reasoner():
    return Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, fused=False))


def test_select_latent_frames():
    assert select_latent_frames(5, "all") == [0, 1, 2, 3, 4]
    assert select_latent_frames(5, "first") == [0]
    assert select_latent_frames(5, "last") == [4]
    assert select_latent_frames(5, "first_last") == [0, 4]
    assert select_latent_frames(1, "first_last") == [0]
    assert select_latent_frames(6, ("every", 2)) == [0, 2, 4, 5]  # the last frame is always kept
    assert select_latent_frames(5, ("every", 2)) == [0, 2, 4]
    assert select_latent_frames(5, [1, -1]) == [1, 4]
    for bad in ("middle", ("every", 0), [5], [], 3):
        with pytest.raises(ValueError, match="frames"):
            select_latent_frames(5, bad)


@given(n=st.integers(1, 40), k=st.integers(1, 9))
@settings(max_examples=60, deadline=None)
def test_every_kth_selection_properties(n, k):
    idx = select_latent_frames(n, ("every", k))
    assert idx[0] == 0 and idx[-1] == n - 1  # first and last always decoded
    assert idx == sorted(set(idx)) and all(0 <= i < n for i in idx)
    assert all(0 < b - a <= k for a, b in zip(idx, idx[1:]))  # never a gap wider than k
    assert len(idx) <= n // k + 2


class _StructuredVAE(torch.nn.Module):
    """A stand-in VAE with the structure a trained VAE has and a random one lacks: colour is (nearly) a linear
    function of the latent at that place. decode = tanh-squashed 1x1 projection, 8x nearest upsampling, a small
    blur, Wan's causal 4x temporal expansion. The random tiny Wan VAE has no such structure (measured: a linear
    fit gains nothing over the mean colour on held-out latents), so the *fitting procedure* is checked here."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.proj = torch.nn.Parameter(torch.randn(3, 16, generator=gen) * 0.15, requires_grad=False)
        self.config = types.SimpleNamespace(z_dim=16)
        self.dtype = torch.float32

    def decode(self, z, return_dict=False):  # z: (B, 16, F_lat, h, w) -> (B, 3, F, H, W) in [-1, 1]
        rgb = torch.tanh(torch.einsum("bcfhw,dc->bdfhw", z, self.proj))
        b, _, f, h, w = rgb.shape
        x = rgb.permute(0, 2, 1, 3, 4).reshape(b * f, 3, h, w)
        x = F.avg_pool2d(F.interpolate(x, scale_factor=8, mode="nearest"), 3, stride=1, padding=1,
                         count_include_pad=False)
        x = x.view(b, f, 3, 8 * h, 8 * w).permute(0, 2, 1, 3, 4)
        frames = [x[:, :, :1]] + [x[:, :, j: j + 1].expand(-1, -1, 4, -1, -1) for j in range(1, f)]
        return (torch.cat(frames, dim=2),)


class _StructuredFamily:
    name = "structured"
    spatial = 8
    latent_channels = 16
    device = torch.device("cpu")

    def __init__(self):
        vae = _StructuredVAE()
        self.pipe = types.SimpleNamespace(vae=vae)
        vae.config = {"z_dim": 16}  # the fingerprint hashes dict(vae.config)

    def decode(self, z):
        return (self.pipe.vae.decode(z)[0] / 2 + 0.5).clamp(0, 1).permute(0, 2, 1, 3, 4)

    def pixel_frame_index(self, n):
        return [4 * j for j in range(n)]

    def to_vae_space(self, z):
        return z


def test_linear_fit_beats_the_mean_colour_baseline(tmp_path):
    family = _StructuredFamily()
    fake = types.SimpleNamespace(family=family, decode=family.decode)
    ld = LightDecoder(fake, LightDecoderConfig(kind="linear", cache_dir=str(tmp_path), fit_samples=4,
                                               fit_latent_size=8))
    z, _ = ld.fit_data(seed=99)  # held-out latents (the fit used seed 0)
    full = family.decode(z)[:, family.pixel_frame_index(z.shape[2])]
    light = ld(z, frames="all")
    assert light.shape == full.shape
    train_z, train_target = ld.fit_data(seed=0)
    mean_colour = train_target.mean(dim=(0, 1, 3, 4)).view(1, 1, 3, 1, 1).expand_as(full)
    gain = psnr(light, full) - psnr(mean_colour, full)
    # Measured: ~+15 dB. The structure is linear up to tanh and a 3x3 blur; 6 dB (4x lower MSE) leaves margin.
    assert gain > 6.0, (psnr(light, full), psnr(mean_colour, full))


def test_linear_fit_on_the_wan_vae_is_cached_and_differentiable(reasoner, tmp_path):
    cfg = LightDecoderConfig(kind="linear", cache_dir=str(tmp_path), **SMALL_FIT)
    ld = LightDecoder(reasoner, cfg)
    assert not ld.loaded_from_cache and os.path.exists(ld.cache_path)
    assert ld.weight.shape == (16, 3) and ld.bias.shape == (3,)
    calls = []
    orig_decode = reasoner.pipe.vae.decode
    reasoner.pipe.vae.decode = lambda *a, **k: (calls.append(1), orig_decode(*a, **k))[1]  # count VAE decodes
    try:
        again = LightDecoder(reasoner, cfg)
    finally:
        del reasoner.pipe.vae.decode
    assert again.loaded_from_cache and not calls  # no VAE work the second time
    assert torch.equal(again.weight, ld.weight) and again.fit_psnr == ld.fit_psnr
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".fit-tmp-")]

    z = torch.randn(1, 16, 3, 4, 4, requires_grad=True)
    out = ld(z, frames="first_last")
    assert out.shape == (1, 2, 3, 32, 32) and float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    out.mean().backward()
    assert float(z.grad[:, :, 1].abs().sum()) == 0  # the middle latent frame was not decoded
    assert float(z.grad[:, :, 0].abs().sum()) > 0 and float(z.grad[:, :, 2].abs().sum()) > 0


@pytest.mark.parametrize("family", ["cogvideox", "ltx"])
def test_light_decoder_on_other_families(tmp_path, family):
    from vlmteach_fast.testing import tiny_cogvideox_i2v_pipeline, tiny_ltx_i2v_pipeline

    pipe = tiny_cogvideox_i2v_pipeline() if family == "cogvideox" else tiny_ltx_i2v_pipeline()
    r = Reasoner.from_pipeline(pipe, LoRASpec(rank=2, fused=False))
    c = r.family.latent_channels
    ld = LightDecoder(r, LightDecoderConfig(kind="linear", cache_dir=str(tmp_path), fit_samples=2, fit_latent_frames=3,
                                            fit_latent_size=2 if family == "cogvideox" else 4))
    assert ld.weight.shape == (c, 3)
    z = torch.randn(1, c, 3, 2, 2)
    out = ld(z, frames="last")
    full = LightDecoder(r, LightDecoderConfig(kind="full"))(z, frames="last")
    assert out.shape == full.shape == (1, 1, 3, 2 * r.family.spatial, 2 * r.family.spatial)


def test_a_different_vae_gets_a_different_cache_entry(tmp_path):
    r1 = Reasoner.from_pipeline(tiny_wan_pipeline("t2v", seed=0), LoRASpec(rank=2, fused=False))
    r2 = Reasoner.from_pipeline(tiny_wan_pipeline("t2v", seed=1), LoRASpec(rank=2, fused=False))
    cfg = LightDecoderConfig(kind="linear", cache_dir=str(tmp_path), **SMALL_FIT)
    assert LightDecoder(r1, cfg).cache_path != LightDecoder(r2, cfg).cache_path


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, files in os.walk(root) for f in files)


@pytest.mark.parametrize("env", ["VLMTEACH_FAST_CACHE", "XDG_CACHE_HOME"])
def test_the_fitted_map_is_cached_only_under_the_user_cache_dir(tmp_path, monkeypatch, env):
    from diffusers import DiffusionPipeline

    tiny_wan_pipeline("t2v").save_pretrained(tmp_path / "model")  # a writable model folder, as a user's checkpoint
    before = _tree(tmp_path / "model")
    monkeypatch.delenv("VLMTEACH_FAST_CACHE", raising=False)
    monkeypatch.setenv(env, str(tmp_path / "cache"))
    pipe = DiffusionPipeline.from_pretrained(str(tmp_path / "model"))
    ld = LightDecoder(Reasoner.from_pipeline(pipe, LoRASpec(rank=2, fused=False)), LightDecoderConfig(**SMALL_FIT))
    assert not ld.loaded_from_cache
    assert _tree(tmp_path / "model") == before  # nothing written into the model's folder
    assert os.path.commonpath([ld.cache_path, str(tmp_path / "cache")]) == str(tmp_path / "cache")
    assert os.path.isfile(ld.cache_path)


def test_full_kind_picks_the_matching_frames(reasoner):
    z = torch.randn(1, 16, 3, 4, 4)
    with torch.no_grad():
        video = reasoner.decode(z)  # (1, 9, 3, 32, 32)
        got = LightDecoder(reasoner, LightDecoderConfig(kind="full"))(z, frames=[0, 2])
    assert video.shape == (1, 9, 3, 32, 32)
    assert torch.equal(got, video[:, [0, 8]])  # latent frame j stands for pixel frame 4j (Wan)
    with pytest.raises(ValueError, match=r"latents.*\(B, 16, F_lat, h, w\)"):
        LightDecoder(reasoner, LightDecoderConfig(kind="full"))(torch.randn(1, 4, 3, 4, 4))


def test_tiny_autoencoder_from_a_diffusers_directory(reasoner, tmp_path):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    tiny = AutoencoderTiny(latent_channels=16, encoder_block_out_channels=(8, 8, 8, 8),
                           decoder_block_out_channels=(8, 8, 8, 8), num_encoder_blocks=(1, 1, 1, 1),
                           num_decoder_blocks=(1, 1, 1, 1)).eval()
    tiny.save_pretrained(tmp_path / "tiny")
    with pytest.warns(DeprecationWarning, match="renamed `path`"):  # the old name still works
        cfg = LightDecoderConfig(kind="tiny", tiny_path=str(tmp_path / "tiny"))
    assert cfg.path == str(tmp_path / "tiny") and cfg.tiny_path is None
    ld = LightDecoder(reasoner, cfg)
    z = torch.randn(1, 16, 3, 4, 4)
    out = ld(z, frames="last")
    assert out.shape == (1, 1, 3, 32, 32)
    with torch.no_grad():  # per-frame application of the same model on the VAE-space latent of the last frame
        ref = (tiny.decode(reasoner.family.to_vae_space(z)[:, :, 2], return_dict=False)[0] / 2 + 0.5).clamp(0, 1)
    torch.testing.assert_close(out[:, 0], ref, rtol=0, atol=1e-6)
    with pytest.raises(FileNotFoundError, match="taew2_1.safetensors"):
        LightDecoder(reasoner, LightDecoderConfig(kind="tiny", path=str(tmp_path / "taew2_1.safetensors")))
    with pytest.raises(ValueError, match="path.*tiny_module"):
        LightDecoder(reasoner, LightDecoderConfig(kind="tiny"))


class _VideoDecoderStandIn(torch.nn.Module):
    """TAEHV's interface (decode_video: (N, T, C, h, w) -> (N, 4T - 3, 3, 8h, 8w) in [0, 1]) with a trivial causal
    body: output frame k carries the latent frame it comes from, so the frame picking can be checked exactly."""

    def decode_video(self, x):
        n, t, c, h, w = x.shape
        rgb = torch.sigmoid(x[:, :, :3])  # (N, T, 3, h, w)
        frames = [rgb[:, :1]] + [rgb[:, j: j + 1].expand(-1, 4, -1, -1, -1) for j in range(1, t)]
        return F.interpolate(torch.cat(frames, 1).flatten(0, 1), scale_factor=8).view(n, 4 * t - 3, 3, 8 * h, 8 * w)


def test_tiny_video_decoder_module_decodes_all_and_picks_frames(reasoner):
    z = torch.randn(1, 16, 3, 4, 4)
    ld = LightDecoder(reasoner, LightDecoderConfig(kind="tiny"), tiny_module=_VideoDecoderStandIn())
    out = ld(z, frames="first_last")
    zv = reasoner.family.to_vae_space(z)
    expect = F.interpolate(torch.sigmoid(zv[:, :3, [0, 2]]).transpose(1, 2).flatten(0, 1), scale_factor=8)
    assert out.shape == (1, 2, 3, 32, 32)
    torch.testing.assert_close(out[0], expect, rtol=0, atol=1e-6)  # frames 0 and 8 of 9, i.e. latent frames 0, 2


def test_config_validation():
    with pytest.raises(ValueError, match="kind.*'auto', 'linear', 'tiny', 'full'.*got 'taesd'"):
        LightDecoderConfig(kind="taesd")
    with pytest.raises(ValueError, match="fit_samples.*>= 1"):
        LightDecoderConfig(fit_samples=0)
    with pytest.raises(ValueError, match="frames"):
        LightDecoderConfig(frames="middle")


@pytest.mark.parametrize("ext", [".mp4", ".gif"])
def test_export_video_round_trip(tmp_path, ext):
    # Smooth frames (a moving gradient), so lossy H.264 / 256-colour GIF stay close to the input.
    t = torch.linspace(0, 1, 32)
    frames = torch.stack([torch.stack([(t[None, :] + 0.05 * k).clamp(0, 1).expand(32, 32),
                                       t[:, None].expand(32, 32), torch.full((32, 32), 0.5)]) for k in range(9)])
    path = export_video(frames, tmp_path / f"v{ext}", fps=8)
    assert os.path.exists(path) and not [p for p in os.listdir(tmp_path) if p.startswith(".video-tmp-")]
    back = np.stack(imageio.mimread(path, memtest=False)).astype(np.float32)[..., :3] / 255.0  # (F, H, W, 3)
    assert back.shape == (9, 32, 32, 3)
    err = np.abs(back - frames.permute(0, 2, 3, 1).numpy()).mean()
    assert err < 0.03, err  # measured ~0.005 (MP4) / ~0.004 (GIF); 0.03 ~ 8 grey levels on average
    with pytest.raises(ValueError, match="path.*.mp4 or .gif"):
        export_video(frames, tmp_path / "v.avi")
    with pytest.raises(ValueError, match=r"frames.*\(F, 3, H, W\)"):
        export_video(frames[:, :2], tmp_path / "w.gif")


# ----- TAEHV-style tiny decoders from files, kind="auto", fidelity -----

def _small_taehv(channels=16, patch=1, seed=0):
    from vlmteach_fast.reasoner.taehv import TinyDecoderConfig, TinyVideoDecoder

    torch.manual_seed(seed)
    return TinyVideoDecoder(TinyDecoderConfig(latent_channels=channels, widths=(8, 8, 4, 4), blocks_per_stage=1,
                                              patch_size=patch)).eval()


def test_tiny_decoder_file_decodes_the_pixel_frames_of_the_selection(reasoner, tmp_path):
    from vlmteach_fast.reasoner.taehv import save_tiny_decoder

    m = _small_taehv()
    path = save_tiny_decoder(m, tmp_path / "taew_small.safetensors")
    ld = LightDecoder(reasoner, LightDecoderConfig(kind="tiny", path=path, frames="first_last"))
    assert ld.kind == "tiny" and ld.source == path
    z = torch.randn(1, 16, 3, 4, 4, requires_grad=True)
    out = ld(z)
    with torch.no_grad():
        ref = m.decode_video(reasoner.family.to_vae_space(z).transpose(1, 2))  # (1, 9, 3, 32, 32)
    pix = reasoner.family.pixel_frame_index(3)
    torch.testing.assert_close(out.detach(), ref[:, [pix[0], pix[2]]], rtol=0, atol=1e-6)
    out.sum().backward()
    assert float(z.grad.abs().sum()) > 0


@pytest.mark.parametrize("channels,patch,msg", [
    (48, 2, "takes 48 latent channels and upsamples 16x in space.*VAE has 16 latent channels, 8x spatial"),
    (16, 2, "takes 16 latent channels and upsamples 16x in space.*VAE has 16 latent channels, 8x spatial"),
])
def test_tiny_decoder_that_does_not_fit_the_vae_is_refused_at_construction(reasoner, tmp_path, channels, patch, msg):
    from vlmteach_fast.reasoner.taehv import save_tiny_decoder

    path = save_tiny_decoder(_small_taehv(channels, patch), tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match=msg):
        LightDecoder(reasoner, LightDecoderConfig(kind="tiny", path=path))


def test_config_path_rules():
    assert LightDecoderConfig().kind == "auto"
    assert LightDecoderConfig(path="x.safetensors").kind == "tiny"  # a path names the decoder
    with pytest.raises(ValueError, match="`path` is for kind='tiny'.*kind='linear'"):
        LightDecoderConfig(kind="linear", path="x.safetensors")
    with pytest.raises(ValueError, match="old name of `path`"):
        LightDecoderConfig(path="a.safetensors", tiny_path="b.safetensors")


def test_config_file_accepts_a_tiny_decoder_path(tmp_path):
    from vlmteach_fast.config_io import load_config

    cfg, _ = load_config({"decoder": {"kind": "tiny", "path": str(tmp_path / "taew2_1.safetensors")}})
    assert cfg.decoder.kind == "tiny" and cfg.decoder.path.endswith("taew2_1.safetensors")


def test_auto_uses_a_registered_decoder_of_this_vae_else_linear_with_one_warning(tmp_path):
    from vlmteach_fast.reasoner import light_decoder as ldmod
    from vlmteach_fast.reasoner.fidelity import _WARNED
    from vlmteach_fast.reasoner.taehv import save_tiny_decoder

    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v", seed=3), LoRASpec(rank=2, fused=False))
    other = Reasoner.from_pipeline(tiny_wan_pipeline("t2v", seed=4), LoRASpec(rank=2, fused=False))
    path = save_tiny_decoder(_small_taehv(), tmp_path / "mine.safetensors",
                             metadata={"vae_fingerprint": ldmod.vae_fingerprint(r.pipe.vae)})
    saved = list(ldmod._REGISTRY)
    try:
        ldmod.register_tiny_decoder(path)
        ld = LightDecoder(r, LightDecoderConfig(cache_dir=str(tmp_path)))
        assert ld.kind == "tiny" and ld.source == path
        _WARNED.clear()
        with pytest.warns(UserWarning, match=r"no trained tiny decoder.*PSNR -?\d+\.\d dB.*kind='tiny', path="):
            fallback = LightDecoder(other, LightDecoderConfig(cache_dir=str(tmp_path), **SMALL_FIT))
        assert fallback.kind == "linear"
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second time: silent
            LightDecoder(other, LightDecoderConfig(cache_dir=str(tmp_path), **SMALL_FIT))
    finally:
        ldmod._REGISTRY[:] = saved


class _MeanRedTeacher:
    """reward = mean red of the frames (a monotone stand-in teacher)."""

    def reward(self, frames, queries):
        from vlmteach_fast.teacher import RewardOutput

        r = frames[:, :, 0].mean(dim=(1, 2, 3))
        return RewardOutput(reward=r, log_probs=r[:, None], weights=torch.ones(1), questions=["red?"],
                            kinds=["goal"])


def test_measure_fidelity(reasoner, tmp_path):
    from vlmteach_fast.reasoner.fidelity import DecoderFidelity, spearman

    z = torch.randn(4, 16, 3, 4, 4)
    full = LightDecoder(reasoner, LightDecoderConfig(kind="full")).measure_fidelity(z, _MeanRedTeacher(), ["red?"])
    assert isinstance(full, DecoderFidelity) and full.n_candidates == 4
    assert full.psnr_db == float("inf") and full.reward_spearman == pytest.approx(1.0) and full.faithful
    lin = LightDecoder(reasoner, LightDecoderConfig(kind="linear", cache_dir=str(tmp_path), **SMALL_FIT))
    fid = lin.measure_fidelity(z, _MeanRedTeacher(), ["red?"], frames="last")
    expect = psnr(lin(z, frames="last"), reasoner.decode(z)[:, [8]])
    assert fid.psnr_db == pytest.approx(expect, abs=1e-4)
    assert fid.reward_spearman == pytest.approx(spearman(torch.tensor(fid.light_rewards),
                                                         torch.tensor(fid.full_rewards)))
    assert ("below" in fid.message()) == (not fid.faithful)
    no_teacher = lin.measure_fidelity(z[:1])
    assert no_teacher.reward_spearman is None and no_teacher.light_rewards == []
    with pytest.raises(ValueError, match="queries"):
        lin.measure_fidelity(z, _MeanRedTeacher())


def test_spearman():
    from vlmteach_fast.reasoner.fidelity import spearman

    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([10.0, 20, 30, 40])) == pytest.approx(1.0)
    assert spearman(torch.tensor([1.0, 2, 3, 4]), torch.tensor([4.0, 3, 2, 1])) == pytest.approx(-1.0)
    assert spearman(torch.tensor([1.0, 2, 3]), torch.tensor([1.0, 3, 2])) == pytest.approx(0.5)
    assert spearman(torch.tensor([1.0, 1, 2]), torch.tensor([1.0, 2, 3])) == pytest.approx(0.8660254, abs=1e-6)
    with pytest.raises(ValueError, match="equal length"):
        spearman(torch.tensor([1.0]), torch.tensor([1.0]))
