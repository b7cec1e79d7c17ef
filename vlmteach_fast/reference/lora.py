"""Reference LoRA linear: ``y = x @ W^T + b + scale * (x @ A^T) @ B^T``.

Shapes (all one dtype): x (M, K) or (..., K); W (N, K); b (N,) or None; A (r, K); B (N, r).
``lora_linear_ref`` is differentiable through plain autograd and is what PEFT computes (without dropout);
``lora_linear_fwd_ref`` / ``lora_linear_bwd_ref`` are the split forward/backward every backend implements.
"""

from typing import Optional, Tuple

import torch
from torch import Tensor


def lora_linear_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor], lora_A: Tensor, lora_B: Tensor,
                    scale: float, upcast: bool = False) -> Tensor:
    """Autograd-differentiable reference. ``upcast=True`` computes in fp32 and casts back (the precision oracle)."""
    dtype = x.dtype
    if upcast:
        x, weight, lora_A, lora_B = (t.float() for t in (x, weight, lora_A, lora_B))
        bias = bias.float() if bias is not None else None
    xa = torch.nn.functional.linear(x, lora_A)  # (..., r)
    out = torch.nn.functional.linear(x, weight, bias) + scale * torch.nn.functional.linear(xa, lora_B)
    return out.to(dtype)


def lora_linear_fwd_ref(x: Tensor, weight: Tensor, bias: Optional[Tensor], lora_A: Tensor, lora_B: Tensor,
                        scale: float) -> Tuple[Tensor, Tensor]:
    """Forward on 2-D x (M, K). Returns (out (M, N), xa (M, r)); xa is the rank-r intermediate saved for backward."""
    xa = x @ lora_A.t()  # (M, r)
    out = torch.addmm(bias, x, weight.t()) if bias is not None else x @ weight.t()  # (M, N)
    out.addmm_(xa, lora_B.t(), alpha=scale)  # in-place rank-r update: no output-size temporary
    return out, xa


def lora_linear_bwd_ref(grad_out: Tensor, x: Tensor, xa: Tensor, weight: Tensor, lora_A: Tensor, lora_B: Tensor,
                        scale: float) -> Tuple[Tensor, Tensor, Tensor]:
    """Backward on 2-D tensors. Returns (dx (M, K), dA (r, K), dB (N, r)).

    Chain rule with dY = grad_out (M, N):
        dXA = scale * dY @ B          (M, r)
        dB  = scale * dY^T @ XA       (N, r)
        dA  = dXA^T @ X               (r, K)
        dX  = dY @ W + dXA @ A        (M, K)
    """
    dxa = (grad_out @ lora_B).mul_(scale)  # (M, r)
    grad_B = (grad_out.t() @ xa).mul_(scale)  # (N, r)
    grad_A = dxa.t() @ x  # (r, K)
    grad_x = (grad_out @ weight).addmm_(dxa, lora_A)  # (M, K)
    return grad_x, grad_A, grad_B
