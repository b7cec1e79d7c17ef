"""Triton kernels, installed as ``vlmteach_fast.kernels``. Importing needs triton; ``vlmteach_fast._ext`` guards it."""

from .lora import lora_bwd_triton, lora_fwd_triton

__all__ = ["lora_fwd_triton", "lora_bwd_triton"]
