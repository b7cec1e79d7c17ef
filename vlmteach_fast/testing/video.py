"""Tiny random-weight diffusers video pipelines, built offline, for tests, benchmarks and smoke runs.

The configs are diffusers' own unit-test configs (the hub cannot be reached from CI): every component is
built from a config, put in eval mode (built modules start in training mode and UMT5's dropout would make two calls
differ) and kept in float32. Nothing here is downloaded. The frames these pipelines make are noise-like; they exist
to exercise shapes, gradients, determinism and file formats, not quality.
"""

from __future__ import annotations

import torch

__all__ = ["tiny_wan_pipeline", "tiny_ti2v_pipeline", "tiny_cogvideox_i2v_pipeline", "tiny_ltx_i2v_pipeline",
           "tiny_wan_transformer", "tiny_text_encoder"]

_WAN_VARIANTS = ("t2v", "i2v", "ti2v")
# diffusers' unit-test WanTransformer3DModel config (2 heads of 12; 16 latent channels in and out, 36 in for I2V)
_WAN_TRANSFORMER = dict(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, text_dim=32, freq_dim=256,
                        ffn_dim=32, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def _eval(*modules):
    for m in modules:
        if m is not None:
            m.eval()


def tiny_text_encoder():
    """(ByT5 tokenizer, UMT5 encoder): Wan's text encoder at toy size."""
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    text_encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8
        )
    )
    # ByT5Tokenizer needs no files; its 384-entry vocabulary matches vocab_size above.
    return ByT5Tokenizer(), text_encoder


def tiny_wan_pipeline(variant: str = "t2v", seed: int = 0, num_layers: int = 2, expand_timesteps: bool = False):
    """Build a tiny Wan pipeline with random weights.

    Args:
        variant: ``"t2v"`` (``WanPipeline``), ``"i2v"`` (Wan2.1 ``WanImageToVideoPipeline``: 36 input channels =
            16 noise + 4 mask + 16 image latents, with a tiny CLIP image encoder) or ``"ti2v"`` (Wan2.2 TI2V form:
            ``WanImageToVideoPipeline(expand_timesteps=True)``, 16 input channels, per-token timesteps).
        seed: seeds ``torch.manual_seed`` before building, so the same seed gives the same weights.
        num_layers: transformer blocks (2 is diffusers' test config).
        expand_timesteps: for ``"t2v"`` only: the Wan2.2 TI2V-5B text-to-video form (per-token timesteps).

    Returns:
        A pipeline on the CPU in float32 with every component in eval mode. Frames must satisfy ``height`` and
        ``width`` divisible by 16 (8x VAE x 2x patch) and ``num_frames % 4 == 1``.
    """
    if variant not in _WAN_VARIANTS:
        raise ValueError(f"`variant` must be one of {_WAN_VARIANTS}, got {variant!r}")
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(
        base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True]
    )
    tokenizer, text_encoder = tiny_text_encoder()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=7.0)
    common = dict(_WAN_TRANSFORMER, num_layers=num_layers)
    parts = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=scheduler)
    if variant == "t2v":
        from diffusers import WanPipeline

        transformer = WanTransformer3DModel(in_channels=16, out_channels=16, **common)
        _eval(vae, text_encoder, transformer)
        return WanPipeline(transformer=transformer, expand_timesteps=expand_timesteps, **parts)

    from diffusers import WanImageToVideoPipeline

    if variant == "ti2v":
        transformer = WanTransformer3DModel(in_channels=16, out_channels=16, **common)
        _eval(vae, text_encoder, transformer)
        return WanImageToVideoPipeline(transformer=transformer, expand_timesteps=True, **parts)

    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    transformer = WanTransformer3DModel(in_channels=36, out_channels=16, image_dim=4, **common)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=4,
            projection_dim=4,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            intermediate_size=16,
            patch_size=1,
        )
    )
    image_processor = CLIPImageProcessor(crop_size=32, size=32)
    _eval(vae, text_encoder, transformer, image_encoder)
    return WanImageToVideoPipeline(transformer=transformer, image_encoder=image_encoder, image_processor=image_processor,
                                   **parts)


def _tiny_t5():
    from transformers import ByT5Tokenizer, T5Config, T5EncoderModel

    text_encoder = T5EncoderModel(
        T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                 relative_attention_num_buckets=8)
    )
    return ByT5Tokenizer(), text_encoder


def tiny_ltx_i2v_pipeline(seed: int = 0):
    """A tiny ``LTXImageToVideoPipeline`` (diffusers' test config): 8 latent channels, 4x spatial and 4x temporal
    compression (two spatio-temporal down blocks), patch size 1; use ``num_frames = 4k + 1`` and sides divisible
    by 4 (32 x 32 x 9 frames: 3 x 8 x 8 latents)."""
    from diffusers import (AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXImageToVideoPipeline,
                           LTXVideoTransformer3DModel)

    torch.manual_seed(seed)
    transformer = LTXVideoTransformer3DModel(
        in_channels=8, out_channels=8, patch_size=1, patch_size_t=1, num_attention_heads=4, attention_head_dim=8,
        cross_attention_dim=32, num_layers=1, caption_channels=32,
    )
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8), layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1), spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False), decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4, upsample_factor=(1,) * 4, timestep_conditioning=False, patch_size=1,
        patch_size_t=1, encoder_causal=True, decoder_causal=False,
    )
    vae.use_framewise_encoding = False
    vae.use_framewise_decoding = False
    tokenizer, text_encoder = _tiny_t5()
    _eval(vae, text_encoder, transformer)
    return LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=text_encoder,
                                   tokenizer=tokenizer, transformer=transformer)


def tiny_cogvideox_i2v_pipeline(seed: int = 0):
    """A tiny ``CogVideoXImageToVideoPipeline`` (diffusers' test config, DDIM scheduler): 4 latent channels, 8x
    spatial / 4x temporal compression, learned positional embeddings sized for 16 x 16 pixels and 9 frames, so
    use exactly ``num_frames=9, height=16, width=16``."""
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline,
                           CogVideoXTransformer3DModel)

    torch.manual_seed(seed)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=4, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=1, sample_width=2, sample_height=2, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=True,
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4,
    )
    tokenizer, text_encoder = _tiny_t5()
    _eval(vae, text_encoder, transformer)
    return CogVideoXImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                         transformer=transformer, scheduler=CogVideoXDDIMScheduler())


def tiny_ti2v_pipeline():
    """``tiny_wan_pipeline("ti2v")``: a zero-argument factory (``--pipeline py:vlmteach_fast.testing:tiny_ti2v_pipeline``)."""
    return tiny_wan_pipeline("ti2v")


def tiny_wan_transformer(seed: int = 0):
    """A bare ``WanTransformer3DModel`` (2 layers, 2 heads of 12, 16 latent channels), eval mode, float32."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(seed)
    return WanTransformer3DModel(in_channels=16, out_channels=16, num_layers=2, **_WAN_TRANSFORMER).eval()


def unrolled_latents(reasoner, prepared, steps: int, grad_steps: int):
    """Reference for ``Reasoner.predict(mode="k_step")``: the family's schedule / denoise / step unrolled by hand
    with plain autograd (no checkpointing), the first ``steps - grad_steps`` steps without gradient. Returns the
    finalized clean latents (B, C, F_lat, h, w), differentiable w.r.t. the LoRA. Independent of ``predict``'s loop."""
    import torch

    a = reasoner.family
    timesteps, coeffs = a.schedule(steps, prepared, None)
    latents = a.initial_latents(prepared)
    for i in range(steps):
        with torch.set_grad_enabled(i >= steps - grad_steps):
            out = a.denoise(prepared, latents, timesteps[i], prepared.guidance_scale)
            latents = a.step(latents, out, float(coeffs[i, 0]), float(coeffs[i, 1]))
    return a.finalize(prepared, latents)
