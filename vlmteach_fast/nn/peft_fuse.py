"""Swap PEFT LoRA layers for fused ones in place, and back.

``fuse_peft_lora(model)`` turns every PEFT ``lora.Linear`` that the fused op computes exactly (one active adapter, no
dropout, plain LoRA on an ``nn.Linear``) into a ``FusedPeftLinear``: a subclass of PEFT's ``lora.Linear`` whose
forward calls the fused op. The module object, its parameters and its state-dict keys stay the same, so
``peft.get_peft_model_state_dict``, diffusers' ``save_lora_weights`` / ``load_lora_weights`` and PEFT's adapter
management (``set_adapter``, ``merge``, ``disable_adapter_layers``) keep working. If the layer's state later stops
being fusable (adapters disabled or merged, several active adapters, ``adapter_names=`` mixed batches), its forward
defers to PEFT's own, so results are always PEFT's. ``unfuse_peft_lora`` restores the plain PEFT class.
"""

import functools
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from torch import nn

from .lora_linear import fused_lora_forward

__all__ = ["FuseReport", "fuse_peft_lora", "unfuse_peft_lora", "fused_peft_linear_class"]


@dataclass
class FuseReport:
    """What ``fuse_peft_lora`` / ``unfuse_peft_lora`` did: module names swapped, and skipped ones with the reason."""

    swapped: List[str] = field(default_factory=list)
    skipped: Dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"swapped {len(self.swapped)} LoRA layer(s), left {len(self.skipped)} alone"]
        lines += [f"  kept {name}: {why}" for name, why in self.skipped.items()]
        return "\n".join(lines)


def _why_not_fusable(layer) -> Optional[str]:
    """None when the fused op computes ``layer`` exactly, else the reason it does not."""
    if getattr(layer, "disable_adapters", False):
        return "adapters are disabled"
    if getattr(layer, "merged", False):
        return "adapter weights are merged into the base layer"
    active = [a for a in layer.active_adapters if a in layer.lora_A]
    if len(active) != 1:
        return f"{len(active)} active adapters (the fused op handles exactly one)"
    name = active[0]
    base = layer.base_layer
    if type(base) is not nn.Linear:
        return f"base layer is {type(base).__name__}, not torch.nn.Linear (quantized or wrapped)"
    if not base.weight.dtype.is_floating_point:
        return f"base weight dtype {base.weight.dtype} is not floating point"
    if getattr(layer, "fan_in_fan_out", False):
        return "fan_in_fan_out=True (Conv1D-style weight)"
    dropout = layer.lora_dropout[name]
    if not isinstance(dropout, nn.Identity) and getattr(dropout, "p", 0.0) > 0:
        return f"lora_dropout p={dropout.p} > 0"
    if name in getattr(layer, "lora_variant", {}) or getattr(layer, "use_dora", {}).get(name, False):
        return "a LoRA variant (DoRA, ...) is active"
    if getattr(layer, "lora_bias", {}).get(name, False):
        return "lora_bias=True"
    r = layer.lora_A[name].out_features
    if not 1 <= r <= 256:
        return f"rank {r} outside 1..256"
    return None


@functools.lru_cache(maxsize=None)
def fused_peft_linear_class():
    """``FusedPeftLinear``, built on first use so that importing vlmteach_fast does not import peft."""
    from peft.tuners.lora.layer import Linear as PeftLinear

    class FusedPeftLinear(PeftLinear):
        """PEFT ``lora.Linear`` whose forward runs ``vlmteach_fast.ops.lora_linear`` while the layer is fusable."""

        def forward(self, x, *args, **kwargs):
            if args or kwargs or _why_not_fusable(self) is not None:
                return super().forward(x, *args, **kwargs)
            name = next(a for a in self.active_adapters if a in self.lora_A)
            return fused_lora_forward(x, self.base_layer, self.lora_A[name], self.lora_B[name], self.scaling[name])

    return FusedPeftLinear


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}")


def fuse_peft_lora(model: nn.Module) -> FuseReport:
    """Make eligible PEFT ``lora.Linear`` layers in ``model`` run the fused LoRA op, in place.

    Args:
        model: any ``nn.Module`` holding PEFT LoRA layers (a ``PeftModel``, or a diffusers transformer after
            ``add_adapter``).
    Returns:
        FuseReport listing the fused module names and the skipped ones with the reason (dropout > 0, several active
        adapters, quantized base, DoRA, ...). Nothing is copied; parameters and state-dict keys are unchanged.
    """
    _check_model(model)
    from peft.tuners.lora.layer import Linear as PeftLinear

    fused_cls = fused_peft_linear_class()
    report = FuseReport()
    for name, module in model.named_modules():
        if not isinstance(module, PeftLinear) or isinstance(module, fused_cls):
            continue
        if type(module) is not PeftLinear:  # bnb / torchao / other backends subclass it with their own forward
            report.skipped[name] = f"{type(module).__module__}.{type(module).__name__} is not plain lora.Linear"
            continue
        why = _why_not_fusable(module)
        if why is not None:
            report.skipped[name] = why
            continue
        module.__class__ = fused_cls
        report.swapped.append(name)
    return report


def unfuse_peft_lora(model: nn.Module) -> FuseReport:
    """Undo ``fuse_peft_lora`` in place: fused layers become plain PEFT ``lora.Linear`` again (weights kept)."""
    _check_model(model)
    from peft.tuners.lora.layer import Linear as PeftLinear

    fused_cls = fused_peft_linear_class()
    report = FuseReport()
    for name, module in model.named_modules():
        if isinstance(module, fused_cls):
            module.__class__ = PeftLinear
            report.swapped.append(name)
    return report
