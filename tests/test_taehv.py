"""TinyVideoDecoder (TAEHV layout): published key names and shapes, output geometry, causal frame mapping against
the Wan VAE's, differentiability, and loading from files (safetensors, .pth with weights_only, bad files)."""

import pytest
import torch

from vlmteach_fast.reasoner.taehv import (TAEW2_1, TAEW2_2, TinyDecoderConfig, TinyVideoDecoder, load_tiny_decoder,
                                          save_tiny_decoder, tiny_decoder_from_state_dict)


def _published_decoder_shapes(c: int, patch: int) -> dict:
    """Decoder keys and shapes of the published taew2_1 (c=16, patch=1) / taew2_2 (c=48, patch=2) checkpoints, as
    their layout defines them (madebyollin/taehv, taehv.py): Clamp, conv, ReLU, then per stage 3 MemBlocks,
    Upsample, TGrow, conv; ReLU and the head conv. TGrow of stage 0 has stride 1, stages 1-2 stride 2."""
    shapes = {"decoder.1.weight": (256, c, 3, 3), "decoder.1.bias": (256,)}
    widths = (256, 128, 64, 64)
    strides = (1, 2, 2)
    base = 3
    for s in range(3):
        n = widths[s]
        for b in range(base, base + 3):
            shapes.update({f"decoder.{b}.conv.0.weight": (n, 2 * n, 3, 3), f"decoder.{b}.conv.0.bias": (n,),
                           f"decoder.{b}.conv.2.weight": (n, n, 3, 3), f"decoder.{b}.conv.2.bias": (n,),
                           f"decoder.{b}.conv.4.weight": (n, n, 3, 3), f"decoder.{b}.conv.4.bias": (n,)})
        shapes[f"decoder.{base + 4}.conv.weight"] = (n * strides[s], n, 1, 1)
        shapes[f"decoder.{base + 5}.weight"] = (widths[s + 1], n, 3, 3)
        base += 6
    shapes.update({"decoder.22.weight": (3 * patch * patch, 64, 3, 3), "decoder.22.bias": (3 * patch * patch,)})
    return shapes


@pytest.mark.parametrize("config,c,patch", [(TAEW2_1, 16, 1), (TAEW2_2, 48, 2)], ids=["taew2_1", "taew2_2"])
def test_state_dict_names_and_shapes_are_the_published_ones(config, c, patch):
    sd = {f"decoder.{k}": v for k, v in TinyVideoDecoder(config).decoder.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in sd.items()} == _published_decoder_shapes(c, patch)
    assert (config.spatial_factor, config.temporal_factor) == ((8, 4) if c == 16 else (16, 4))
    # A published file also holds the encoder: ignored; the decoder's shape is read back from its weights.
    sd["encoder.0.weight"] = torch.zeros(64, 3 * patch * patch, 3, 3)
    back = tiny_decoder_from_state_dict(sd)
    assert back.config == config
    assert all(torch.equal(back.decoder.state_dict()[k[len("decoder."):]], v) for k, v in sd.items()
               if k.startswith("decoder."))


# Small widths; the Wan 2.1 (16 ch, 8x) and Wan 2.2 (48 ch, 2x2 patches, 16x) geometries.
SMALL = {"wan2.1": TinyDecoderConfig(latent_channels=16, widths=(8, 8, 4, 4), blocks_per_stage=1),
         "wan2.2": TinyDecoderConfig(latent_channels=48, widths=(8, 8, 4, 4), blocks_per_stage=1, patch_size=2)}


@pytest.mark.parametrize("name", list(SMALL))
def test_shapes_and_gradient(name):
    cfg = SMALL[name]
    torch.manual_seed(0)
    m = TinyVideoDecoder(cfg)
    z = torch.randn(2, 3, cfg.latent_channels, 4, 6, requires_grad=True)  # (N, T, C, h, w)
    out = m.decode_video(z)
    s = cfg.spatial_factor
    assert out.shape == (2, 9, 3, 4 * s, 6 * s)  # 4 (T - 1) + 1 frames, the Wan VAE's count
    assert float(out.detach().min()) >= 0 and float(out.detach().max()) <= 1
    m(z).square().sum().backward()
    assert z.grad is not None and float(z.grad.abs().sum()) > 0
    assert all(float(z.grad[:, t].abs().sum()) > 0 for t in range(3))  # every latent frame gets a gradient
    with pytest.raises(ValueError, match=rf"latents.*\(N, T, {cfg.latent_channels}, h, w\)"):
        m(torch.randn(1, 3, cfg.latent_channels + 1, 4, 4))


def _first_changed_frame(m, z, j):
    with torch.no_grad():
        base = m(z)
        z2 = z.clone()
        z2[:, j] += 3.0
        diff = (m(z2) - base).abs().amax(dim=(0, 2, 3, 4))  # per output frame
    changed = (diff > 1e-6).nonzero().flatten().tolist()
    return changed[0], len(diff)


def test_frame_mapping_is_causal_and_matches_the_wan_vae():
    """Latent frame j first shows in pixel frame 4j - 3 (j >= 1; frame 0 for j = 0) and not before: the Wan VAE's
    grouping, whose representative frame (``pixel_frame_index``) is the group's last, 4j. The frame count equals the
    full VAE's on the same latent grid."""
    from vlmteach_fast.reasoner import LoRASpec, Reasoner
    from vlmteach_fast.testing import tiny_wan_pipeline

    r = Reasoner.from_pipeline(tiny_wan_pipeline("t2v"), LoRASpec(rank=2, fused=False))
    a = r.family
    torch.manual_seed(0)
    m = TinyVideoDecoder(SMALL["wan2.1"])
    t = 4
    z = torch.randn(1, t, 16, 4, 4)
    with torch.no_grad():
        full = r.decode(z.transpose(1, 2))  # (1, F, 3, H, W)
    pix = a.pixel_frame_index(t)
    for j in range(t):
        first, count = _first_changed_frame(m, z, j)
        assert count == full.shape[1] == m.config.num_frames(t)
        assert first == (0 if j == 0 else 4 * j - 3)
        assert pix[j] == (0 if j == 0 else first + 3)  # the representative frame closes latent frame j's group


def test_frame_count_matches_a_wan22_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=8, z_dim=48, dim_mult=[1, 1, 1, 1], num_res_blocks=1, is_residual=True,
                           in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
                           temperal_downsample=[False, True, True]).eval()
    z = torch.randn(1, 48, 3, 2, 2)
    with torch.no_grad():
        full = vae.decode(z, return_dict=False)[0]  # (1, 3, F, H, W)
        light = TinyVideoDecoder(SMALL["wan2.2"]).decode_video(z.transpose(1, 2))
    assert light.shape == full.transpose(1, 2).shape == (1, 9, 3, 32, 32)


class _NotATensor:
    """Any class: unpickling it would run arbitrary code, which weights_only=True refuses."""


def test_file_round_trip_and_pth_only_with_weights_only(tmp_path):
    torch.manual_seed(0)
    cfg = TinyDecoderConfig(latent_channels=16, widths=(8, 6, 4, 4), blocks_per_stage=2,
                            space_upscale=(False, True, False), patch_size=2)
    m = TinyVideoDecoder(cfg).eval()
    path = save_tiny_decoder(m, tmp_path / "d.safetensors", metadata={"vae_fingerprint": "abc"})
    back, meta = load_tiny_decoder(path)
    assert back.config == cfg and meta["vae_fingerprint"] == "abc"  # space_upscale read from the header
    z = torch.randn(1, 2, 16, 4, 4)
    torch.testing.assert_close(back(z), m(z), rtol=0, atol=0)

    pth = tmp_path / "d.pth"
    torch.save({f"decoder.{k}": v for k, v in m.decoder.state_dict().items()}, pth)
    with pytest.warns(UserWarning, match="weights_only=True"):
        back2, meta2 = load_tiny_decoder(pth, space_upscale=(False, True, False))
    torch.testing.assert_close(back2(z), m(z), rtol=0, atol=0)
    assert meta2 == {}

    torch.save({"decoder.1.weight": _NotATensor()}, tmp_path / "evil.pth")  # a pickle that is more than tensors
    with pytest.warns(UserWarning), pytest.raises(Exception, match="(?i)weights.only|unsupported|global"):
        load_tiny_decoder(tmp_path / "evil.pth")


def test_bad_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_tiny_decoder(tmp_path / "nope.safetensors")
    (tmp_path / "x.bin").write_bytes(b"0")
    with pytest.raises(ValueError, match=r"\.safetensors, \.pth or \.pt.*x\.bin"):
        load_tiny_decoder(tmp_path / "x.bin")
    from safetensors.torch import save_file

    save_file({"encoder.0.weight": torch.zeros(2, 2)}, str(tmp_path / "enc.safetensors"))
    with pytest.raises(ValueError, match="enc.safetensors.*not a TAEHV-style decoder"):
        load_tiny_decoder(tmp_path / "enc.safetensors")


def test_config_validation():
    with pytest.raises(ValueError, match="widths.*4 ints"):
        TinyDecoderConfig(widths=(8, 8, 8))
    with pytest.raises(ValueError, match="space_upscale.*3 bools"):
        TinyDecoderConfig(space_upscale=(True, True))
    with pytest.raises(ValueError, match="patch_size.*>= 1"):
        TinyDecoderConfig(patch_size=0)
