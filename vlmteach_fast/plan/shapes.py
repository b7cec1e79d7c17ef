"""Named model shapes: the published configs of the models users run, built with random (or no) weights.

``wan2.2-ti2v-5b`` (the Wan2.2-TI2V-5B transformer and VAE) and ``qwen2.5-vl-7b`` (the Qwen2.5-VL-7B-Instruct
teacher), from their ``config.json`` files, so cost and memory can be measured (``bench/gpu_check.sh``) and accounted
(``vlmteach_fast.plan``) without downloading a checkpoint. Built on ``device="meta"`` they hold no data at all.

Deliberate departures from the real checkpoints:
- ``text_encoder="measured"`` (the default of the builders, what the GPU check measured): a 1-layer UMT5 whose width
  is the transformer's ``text_dim`` (4096); the prompt is encoded once per instance and only its output shape (512
  tokens x 4096) reaches the denoiser. ``text_encoder="umt5-xxl"`` builds the real UMT5-XXL encoder's shape (24
  layers, about 5.7B parameters) for a memory account of what a real run holds;
- the VAE's ``latents_mean`` / ``latents_std`` are 0 / 1 (a per-channel affine map: no cost difference);
- the teacher's tokenizer is the offline WordLevel one of the tests (the real vocabulary is 152064 tokens and the
  model keeps that size; a question is ~20 tokens either way).
``dry=True`` shrinks every width and depth (and the geometry) so the whole path runs on a CPU in seconds.
"""

from __future__ import annotations

import contextlib
import copy

import torch

__all__ = ["DRY_GEOMETRY", "GEOMETRIES", "QUESTIONS", "QWEN25_VL_7B_TEXT", "QWEN25_VL_7B_VISION", "UMT5_XXL",
           "WAN22_TI2V_5B_TRANSFORMER", "WAN22_VAE", "first_frame", "qwen25_vl_teacher", "qwen_configs",
           "umt5_config", "wan_configs", "wan_ti2v_pipeline"]

# Wan-AI/Wan2.2-TI2V-5B-Diffusers, transformer/config.json
WAN22_TI2V_5B_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=24, attention_head_dim=128, in_channels=48, out_channels=48,
    text_dim=4096, freq_dim=256, ffn_dim=14336, num_layers=30, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=None, added_kv_proj_dim=None, rope_max_seq_len=1024,
    pos_embed_seq_len=None,
)
# Wan-AI/Wan2.2-TI2V-5B-Diffusers, vae/config.json (latent statistics replaced, see the module docstring)
WAN22_VAE = dict(
    base_dim=160, decoder_base_dim=256, z_dim=48, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
    temperal_downsample=[False, True, True], dropout=0.0, in_channels=12, out_channels=12, patch_size=2,
    scale_factor_spatial=16, scale_factor_temporal=4, is_residual=True,
    latents_mean=[0.0] * 48, latents_std=[1.0] * 48,
)
# google/umt5-xxl encoder (Wan's text encoder), config.json
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                relative_attention_num_buckets=32, feed_forward_proj="gated-gelu")
# Wan2.2 TI2V-5B sampling: flow shift 5.0, 512 text tokens.
WAN22_FLOW_SHIFT = 5.0
WAN22_TEXT_TOKENS = 512
# Qwen/Qwen2.5-VL-7B-Instruct, config.json (token ids come from the tokenizer, see qwen25_vl_teacher)
QWEN25_VL_7B_TEXT = dict(
    vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28,
    num_key_value_heads=4, max_position_embeddings=128000, rms_norm_eps=1e-6, hidden_act="silu",
    tie_word_embeddings=False,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
)
QWEN25_VL_7B_VISION = dict(
    depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584, patch_size=14,
    spatial_merge_size=2, temporal_patch_size=2, window_size=112, fullatt_block_indexes=[7, 15, 23, 31],
    hidden_act="silu", in_channels=3, tokens_per_second=2,
)
# (num_frames, height, width): the 480p / 49 frames and 704p / 121 frames (Wan2.2-5B's native 720p form)
GEOMETRIES = {"480p49": (49, 480, 832), "704p121": (121, 704, 1280)}
DRY_GEOMETRY = (5, 32, 64)  # 2 latent frames x 2 x 4 latents -> 2 tokens per frame after the 2x2 patch


def wan_configs(dry: bool) -> tuple[dict, dict, int]:
    """(transformer kwargs, VAE kwargs, text tokens), shrunk when ``dry``: 1 block, 2 heads x 16, FFN 64, VAE
    width 8 (same structure: 48 latent channels, 2x2 patchified residual VAE, 16x spatial / 4x temporal)."""
    tr, vae = copy.deepcopy(WAN22_TI2V_5B_TRANSFORMER), copy.deepcopy(WAN22_VAE)
    if not dry:
        return tr, vae, WAN22_TEXT_TOKENS
    tr.update(num_attention_heads=2, attention_head_dim=16, text_dim=32, ffn_dim=64, num_layers=1,
              rope_max_seq_len=32)
    vae.update(base_dim=8, decoder_base_dim=8, num_res_blocks=1)
    return tr, vae, 16


def qwen_configs(dry: bool) -> tuple[dict, dict]:
    """(text config, vision config) of the teacher, shrunk when ``dry``: 1 LM layer of width 64, 1 vision block."""
    text, vision = copy.deepcopy(QWEN25_VL_7B_TEXT), copy.deepcopy(QWEN25_VL_7B_VISION)
    if not dry:
        return text, vision
    text.update(vocab_size=160, hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                num_key_value_heads=2, max_position_embeddings=2048,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]})
    vision.update(depth=1, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  fullatt_block_indexes=[0])
    return text, vision


@contextlib.contextmanager
def _building(device, dtype):
    """Build modules directly on ``device`` in ``dtype`` (a 5B model initialised on the CPU in fp32 would take
    minutes and 20 GB before the copy)."""
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(before)


def umt5_config(dry: bool, text_encoder: str, text_dim: int) -> dict:
    """UMT5Config kwargs: ``"umt5-xxl"`` the real encoder's shape, ``"measured"`` 1 layer of width ``text_dim``."""
    if text_encoder == "umt5-xxl" and not dry:
        return dict(UMT5_XXL)
    if text_encoder not in ("measured", "umt5-xxl"):
        raise ValueError(f"`text_encoder` must be 'measured' or 'umt5-xxl', got {text_encoder!r}")
    # ByT5Tokenizer needs no files (vocabulary 384); the width is what the denoiser reads
    return dict(vocab_size=384, d_model=text_dim, d_kv=8 if dry else 64, d_ff=256, num_layers=1, num_heads=4,
                relative_attention_num_buckets=32)


def wan_ti2v_pipeline(dry: bool, device="cpu", dtype=torch.bfloat16, seed: int = 0, text_encoder: str = "measured"):
    """A ``WanImageToVideoPipeline(expand_timesteps=True)`` (the Wan2.2 TI2V form) at the 5B shape (or shrunk),
    random weights (none on ``device="meta"``), every component in eval mode on ``device`` in ``dtype`` (the VAE
    too, as users run it). ``text_encoder``: ``"measured"`` or ``"umt5-xxl"`` (module docstring)."""
    from diffusers import (AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline,
                           WanTransformer3DModel)
    from transformers import ByT5Tokenizer, UMT5Config, UMT5EncoderModel

    tr_cfg, vae_cfg, _ = wan_configs(dry)
    torch.manual_seed(seed)
    with _building(device, dtype):
        transformer = WanTransformer3DModel(**tr_cfg)
        vae = AutoencoderKLWan(**vae_cfg)
        text_encoder = UMT5EncoderModel(UMT5Config(**umt5_config(dry, text_encoder, tr_cfg["text_dim"])))
    for m in (transformer, vae, text_encoder):
        m.eval().requires_grad_(False)
    return WanImageToVideoPipeline(tokenizer=ByT5Tokenizer(), text_encoder=text_encoder, vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=WAN22_FLOW_SHIFT),
                                   transformer=transformer, expand_timesteps=True)


def qwen25_vl_teacher(dry: bool, device="cpu", dtype=torch.bfloat16, seed: int = 0, reward_config=None):
    """A ``VLMTeacher`` around a random ``Qwen2_5_VLForConditionalGeneration`` at the 7B shape (or shrunk), with
    the tests' offline Qwen tokenizer; eval mode, frozen, on ``device`` in ``dtype``."""
    import transformers as tf
    from ..teacher import RewardConfig, VLMTeacher
    from ..testing.vlm import _ids, make_qwen_tokenizer

    tok = make_qwen_tokenizer()
    text, vision = qwen_configs(dry)
    text.update(bos_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    config = tf.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **_ids(tok))
    torch.manual_seed(seed)
    with _building(device, dtype):
        model = tf.Qwen2_5_VLForConditionalGeneration(config)
    model.eval().requires_grad_(False)
    return VLMTeacher(model, tok, reward_config or RewardConfig())


# 1 goal + 3 process questions: the method's usual query set (two frame views: last frame; 4 spread frames).
QUESTIONS = ["Is the red ball on the green square at the end?", "Does the ball stay intact?",
             "Does the ball move through walls?", "Does the green square stay in the frame?"]


def first_frame(height: int, width: int) -> torch.Tensor:
    """(3, H, W) float32 in [0, 1], seeded."""
    return torch.rand(3, height, width, generator=torch.Generator().manual_seed(0))
