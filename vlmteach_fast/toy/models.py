"""Architectures of the shipped toy models (shared by the training scripts and the loaders) and the loaders.

Video model: Wan2.2 TI2V form, i.e. diffusers' ``WanImageToVideoPipeline(expand_timesteps=True)``: the first latent
frame is replaced by the image latent and gets timestep 0 (the Reasoner's "ti2v" path, no CLIP image encoder).
- ``AutoencoderKLWan`` with 4x spatial (dim_mult of length 3) and 4x temporal compression: 9x32x32 frames ->
  16 x 3 x 8 x 8 latents, one latent pixel per 4-px world cell.
- ``WanTransformer3DModel``: 4 blocks, width 96 (6 heads x 16), patch (1, 2, 2) -> 48 tokens per video.
- ``UMT5EncoderModel``: 2 layers, width 32, random frozen weights (it only has to tell 3 prompts apart) with a
  ``ByT5Tokenizer`` (needs no files).
Teacher: a tiny ``Qwen2VLForConditionalGeneration`` with a word-level tokenizer (``teacher_vocab``).
Light decoder: a TAEHV-layout ``TinyVideoDecoder`` distilled from the VAE (``scripts/train_toy_light_decoder.py``),
registered for ``LightDecoderConfig(kind="auto")`` (the default) when this module is imported.
"""

from __future__ import annotations

import os

import torch

from ..reasoner.light_decoder import register_tiny_decoder
from ..reasoner.taehv import TinyDecoderConfig

__all__ = ["WEIGHTS_DIR", "PIPELINE_DIR", "TEACHER_DIR", "TOY_LIGHT_DECODER", "TOY_LIGHT_DECODER_CONFIG", "build_vae", "build_transformer", "build_text_encoder",
           "build_scheduler", "assemble_pipeline", "load_pipeline", "SAMPLE_STEPS", "SHIFT"]

WEIGHTS_DIR = os.path.join(os.path.dirname(__file__), "weights")
PIPELINE_DIR = os.path.join(WEIGHTS_DIR, "video")
TEACHER_DIR = os.path.join(WEIGHTS_DIR, "teacher")
TOY_LIGHT_DECODER = os.path.join(WEIGHTS_DIR, "light_decoder", "toy_taehv.safetensors")
# 8x8 latents -> 32x32 frames: stages 1-2 at 8x8, stage 3 at 16x16 after the one 2x upsample, and the head at 16x16
# emits 2x2 pixel patches (Wan 2.2's patch trick) instead of running at 32x32: forward + backward 9.3 ms against
# 20 ms (the full VAE: 156 ms). One MemBlock per stage. Timings: docs/light_decoding.md, "The tiny decoder".
TOY_LIGHT_DECODER_CONFIG = TinyDecoderConfig(latent_channels=16, widths=(48, 32, 16, 16), blocks_per_stage=1,
                                             space_upscale=(False, True, False), patch_size=2)
register_tiny_decoder(TOY_LIGHT_DECODER)  # kind="auto" uses it for the shipped VAE (matched by weight fingerprint)
# The video model is trained for few-step sampling: sample with this many Euler steps of the flow ODE.
SAMPLE_STEPS = 4
# Scheduler shift: sigma' = s * sigma / (1 + (s - 1) * sigma); 3 spends half of 4 steps above sigma = 0.75, where
# the walk's direction is decided (measured: shift 1 left the agent a smeared blob more often).
SHIFT = 3.0


def build_vae(temporal: int = 4):
    """A fresh toy ``AutoencoderKLWan``: 4x spatial, ``temporal`` (1, 2 or 4) x temporal compression, 16 channels."""
    from diffusers import AutoencoderKLWan

    if temporal not in (1, 2, 4):
        raise ValueError(f"`temporal` must be 1, 2 or 4, got {temporal!r}")
    downsample = {1: [False, False], 2: [False, True], 4: [True, True]}[temporal]
    return AutoencoderKLWan(base_dim=12, z_dim=16, dim_mult=[1, 2, 2], num_res_blocks=1,
                            temperal_downsample=downsample, scale_factor_spatial=4, scale_factor_temporal=temporal,
                            latents_mean=[0.0] * 16, latents_std=[1.0] * 16)


def build_transformer():
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=6, attention_head_dim=16, in_channels=16,
                                 out_channels=16, text_dim=32, freq_dim=256, ffn_dim=256, num_layers=4,
                                 cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32)


def build_text_encoder(seed: int = 0):
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    enc = UMT5EncoderModel(UMT5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                                      relative_attention_num_buckets=8))
    return ByT5Tokenizer(), enc.eval()


def build_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(shift=SHIFT)


def assemble_pipeline(vae, transformer, tokenizer, text_encoder):
    """A ``WanImageToVideoPipeline`` in the TI2V form from the given components (all put in eval mode)."""
    from diffusers import WanImageToVideoPipeline

    for m in (vae, transformer, text_encoder):
        m.eval()
    return WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae,
                                   scheduler=build_scheduler(), transformer=transformer, expand_timesteps=True)


def load_pipeline(path: str | None = None, dtype: torch.dtype = torch.float32, device="cpu"):
    """Load the shipped toy video model offline.

    Args:
        path: a folder written by ``scripts/train_toy_video.py``; default: the one in the package.
        dtype: parameter dtype (float32 default; the model is 4 MB, nothing to gain from less on CPU).
        device: where to put it.

    Returns:
        A diffusers ``WanImageToVideoPipeline`` (``expand_timesteps=True``) in eval mode. Use it at
        ``num_frames=9, height=32, width=32`` with ``SAMPLE_STEPS`` steps and ``guidance_scale=1``, e.g.
        ``Reasoner.from_pipeline(load_pipeline())``.
    """
    from diffusers import WanImageToVideoPipeline

    path = PIPELINE_DIR if path is None else path
    if not os.path.isfile(os.path.join(path, "model_index.json")):
        raise FileNotFoundError(f"no toy video model at {path!r} (model_index.json missing); "
                                "train it with scripts/train_toy_video.py")
    pipe = WanImageToVideoPipeline.from_pretrained(path, dtype=dtype, use_safetensors=True)
    for m in (pipe.vae, pipe.transformer, pipe.text_encoder):
        m.eval()
    return pipe.to(device)
