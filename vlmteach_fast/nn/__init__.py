"""Modules: the fused LoRA linear layer and the in-place swap of PEFT LoRA layers to fused ones."""

from .lora_linear import FusedLoRALinear
from .peft_fuse import FuseReport, fuse_peft_lora, unfuse_peft_lora

__all__ = ["FusedLoRALinear", "FuseReport", "fuse_peft_lora", "unfuse_peft_lora"]
