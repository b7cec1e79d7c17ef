"""Plain-torch implementations of every kernel: the test oracle and the last-resort fallback."""

from .lora import lora_linear_bwd_ref, lora_linear_fwd_ref, lora_linear_ref

__all__ = ["lora_linear_ref", "lora_linear_fwd_ref", "lora_linear_bwd_ref"]
