"""Diffusers video pipelines as differentiable reasoners: a frozen backbone, one trainable LoRA per instance.

Public API:
- :class:`Reasoner` (``from_pipeline``, ``prepare``, ``predict``, ``sample``, ``decode``, LoRA reset/snapshot/restore,
  ``save_adapter``) and :class:`LoRASpec`;
- :class:`LightDecoder` / :class:`LightDecoderConfig` and :func:`select_latent_frames` for the reward's decoding;
  :class:`TinyVideoDecoder` (TAEHV layout: loads the published ``taew2_1`` / ``taew2_2`` decoders) with
  :func:`load_tiny_decoder` / :func:`register_tiny_decoder`; ``LightDecoder.measure_fidelity`` ->
  :class:`DecoderFidelity` (PSNR and teacher-reward agreement against the full VAE);
- :func:`export_video` (MP4 / GIF);
- :class:`TensorMemoryTracker` (peak tensor bytes on any device, CPU included);
- ``SUPPORTED_PIPELINES``: the diffusers pipeline classes ``Reasoner.from_pipeline`` accepts.

Typical per-instance loop (the teacher's reward stands in as ``reward(frames) -> scalar``)::

    reasoner = Reasoner.from_pipeline(pipe, LoRASpec(rank=16))          # pipe: e.g. WanImageToVideoPipeline
    light = LightDecoder(reasoner, LightDecoderConfig(kind="tiny", path="taew2_2.safetensors"))  # Wan2.2 TI2V-5B
    prepared = reasoner.prepare(prompt, image, num_frames=81, height=480, width=832, seed=0)
    reasoner.reset_lora()
    opt = torch.optim.AdamW(reasoner.lora_parameters(), lr=1e-4)
    for _ in range(16):
        pred = reasoner.predict(prepared, mode="k_step", steps=4, grad_steps=2)   # or mode="one_step"
        loss = -reward(light(pred.latents))                                     # (B, F_sel, 3, H, W) in [0, 1]
        opt.zero_grad(); loss.backward(); opt.step()
    video = reasoner.sample(prepared, steps=4).frames                          # (B, F, 3, H, W) in [0, 1]
    export_video(video, "out.mp4"); reasoner.save_adapter("adapter/")         # stock load_lora_weights loads it
"""

from .family import PreparedInstance
from .fidelity import DecoderFidelity
from .light_decoder import (LightDecoder, LightDecoderConfig, psnr, register_tiny_decoder, select_latent_frames,
                            vae_fingerprint)
from .lora import LoRASpec
from .memory import TensorMemoryTracker
from .reasoner import SUPPORTED_PIPELINES, PredictOutput, Reasoner, SampleOutput
from .taehv import TinyDecoderConfig, TinyVideoDecoder, load_tiny_decoder
from .video_io import export_video

__all__ = [
    "Reasoner",
    "LoRASpec",
    "PreparedInstance",
    "PredictOutput",
    "SampleOutput",
    "LightDecoder",
    "LightDecoderConfig",
    "select_latent_frames",
    "psnr",
    "DecoderFidelity",
    "register_tiny_decoder",
    "vae_fingerprint",
    "TinyDecoderConfig",
    "TinyVideoDecoder",
    "load_tiny_decoder",
    "export_video",
    "TensorMemoryTracker",
    "SUPPORTED_PIPELINES",
]
