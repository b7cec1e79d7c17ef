"""Diffusers video pipelines as differentiable reasoners: a frozen backbone, one trainable LoRA per instance.

Public API:
- :class:`Reasoner` (``from_pipeline``, ``prepare``, ``predict``, ``sample``, ``decode``, LoRA reset/snapshot/restore,
  ``save_adapter``) and :class:`LoRASpec`;
- :class:`LightDecoder` / :class:`LightDecoderConfig` and :func:`select_latent_frames` for the reward's decoding;
- :func:`export_video` (MP4 / GIF);
- :class:`TensorMemoryTracker` (peak tensor bytes on any device, CPU included);
- ``SUPPORTED_PIPELINES``: the diffusers pipeline classes ``Reasoner.from_pipeline`` accepts.
"""

from .family import PreparedInstance
from .light_decoder import LightDecoder, LightDecoderConfig, psnr, select_latent_frames
from .lora import LoRASpec
from .memory import TensorMemoryTracker
from .reasoner import SUPPORTED_PIPELINES, PredictOutput, Reasoner, SampleOutput
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
    "export_video",
    "TensorMemoryTracker",
    "SUPPORTED_PIPELINES",
]
