"""``FusedLoRALinear``: a frozen ``nn.Linear`` plus one LoRA adapter, computed by ``vlmteach_fast.ops.lora_linear``.

It keeps PEFT's attribute layout (``base_layer``, ``lora_A[adapter]``, ``lora_B[adapter]``, ``scaling[adapter]``), so
its state_dict keys are PEFT's (``...base_layer.weight``, ``...lora_A.default.weight``, ``...lora_B.default.weight``).
For models adapted with PEFT use ``fuse_peft_lora`` instead: it keeps the PEFT layers (and so every PEFT/diffusers
save, load and adapter-management path) and only swaps their forward for ``fused_lora_forward``.
"""

import math
from typing import Optional

import torch
from torch import Tensor, nn

from ..ops.lora import lora_linear

__all__ = ["FusedLoRALinear", "fused_lora_forward"]


def fused_lora_forward(x: Tensor, base_layer: nn.Linear, lora_A: nn.Linear, lora_B: nn.Linear,
                       scaling: float) -> Tensor:
    """``base_layer(x) + scaling * lora_B(lora_A(x))`` in one fused op, computed in the base weight's dtype.

    x: (..., K) any float dtype (cast to the base dtype, as PEFT casts inputs); base_layer.weight (N, K);
    lora_A.weight (r, K) and lora_B.weight (N, r) in any float dtype (cast, differentiably, to the base dtype).
    Returns (..., N) in the base dtype.
    """
    weight = base_layer.weight
    dtype = weight.dtype
    return lora_linear(x.to(dtype), weight, base_layer.bias, lora_A.weight.to(dtype), lora_B.weight.to(dtype),
                       scaling)


class FusedLoRALinear(nn.Module):
    """Frozen linear layer with a trainable low-rank update, fused into one op.

    ``y = base_layer(x) + scaling * lora_B(lora_A(x))`` with ``scaling = lora_alpha / r`` (``/ sqrt(r)`` if
    ``use_rslora``).

    Args:
        base_layer: the ``nn.Linear`` to adapt (in_features K, out_features N). Its parameters are frozen.
        r: rank, 1..256.
        lora_alpha: scaling numerator; defaults to ``r`` (scaling 1).
        adapter_name: key under which the adapter is stored (PEFT's default: ``"default"``).
        use_rslora: rank-stabilized scaling ``lora_alpha / sqrt(r)``.
        init_lora_weights: ``True`` (PEFT default: A Kaiming-uniform, B zeros, so the layer starts as the base) or
            ``"gaussian"`` (A ~ N(0, 1/r), B zeros).

    Input x: (..., K) in the base layer's dtype (other float dtypes are cast to it, as PEFT does); output (..., N).
    LoRA weights kept in another dtype (PEFT keeps fp32 adapters on bf16 models) are cast to the compute dtype in the
    forward; their gradients flow back in their own dtype.
    """

    def __init__(self, base_layer: nn.Linear, r: int = 16, lora_alpha: Optional[float] = None,
                 adapter_name: str = "default", use_rslora: bool = False, init_lora_weights=True):
        super().__init__()
        if not isinstance(base_layer, nn.Linear):
            raise TypeError(f"`base_layer` must be a torch.nn.Linear, got {type(base_layer).__name__}")
        if not isinstance(r, int) or not 1 <= r <= 256:
            raise ValueError(f"`r` must be an integer in 1..256, got {r!r}")
        if init_lora_weights not in (True, "gaussian"):
            raise ValueError(f"`init_lora_weights` must be True or 'gaussian', got {init_lora_weights!r}")
        lora_alpha = float(r if lora_alpha is None else lora_alpha)
        if not math.isfinite(lora_alpha):
            raise ValueError(f"`lora_alpha` must be finite, got {lora_alpha}")
        base_layer.requires_grad_(False)
        w = base_layer.weight
        self.base_layer = base_layer
        self.lora_A = nn.ModuleDict({adapter_name: nn.Linear(w.shape[1], r, bias=False, device=w.device,
                                                             dtype=w.dtype)})
        self.lora_B = nn.ModuleDict({adapter_name: nn.Linear(r, w.shape[0], bias=False, device=w.device,
                                                             dtype=w.dtype)})
        self.scaling = {adapter_name: lora_alpha / (math.sqrt(r) if use_rslora else r)}
        self.active_adapter = adapter_name
        with torch.no_grad():
            if init_lora_weights == "gaussian":
                nn.init.normal_(self.lora_A[adapter_name].weight, std=1.0 / r)
            else:
                nn.init.kaiming_uniform_(self.lora_A[adapter_name].weight, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B[adapter_name].weight)

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    @property
    def r(self) -> int:
        return self.lora_A[self.active_adapter].out_features

    def forward(self, x: Tensor) -> Tensor:
        name = self.active_adapter
        return fused_lora_forward(x, self.base_layer, self.lora_A[name], self.lora_B[name], self.scaling[name])

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"scaling={self.scaling[self.active_adapter]:g}, adapter={self.active_adapter!r}")
