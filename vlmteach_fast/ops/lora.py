"""The fused LoRA linear op: ``y = x @ weight.T + bias + scale * (x @ lora_A.T) @ lora_B.T``.

Layers (docs/architecture.md): kernels in ``kernels/lora.py`` (Triton) and ``csrc/lora_*.{cpp,cu}`` (C++/CUDA), the plain-torch
reference in ``vlmteach_fast/reference/lora.py``, this file (checks, dispatch, autograd) and the module in
``vlmteach_fast/nn/lora_linear.py``.

Registered ops (namespace ``vlmteach_fast``):
  * ``lora_linear(x, weight, bias, lora_A, lora_B, scale) -> (out, xa)``: forward; ``xa = x @ lora_A.T`` is the
    rank-r intermediate that backward needs, returned so autograd saves it instead of recomputing it.
  * ``lora_linear_backward(grad_out, x, xa, weight, lora_A, lora_B, scale) -> (grad_x, grad_A, grad_B)``.
Backward saves x, xa (rank r) and the parameters: nothing of output size, as the reference.
"""

import math
from typing import Optional, Tuple

import torch
from torch import Tensor

from .. import _ext
from ..reference.lora import lora_linear_bwd_ref, lora_linear_fwd_ref
from .dispatch import select_backend_for_shape

__all__ = ["lora_linear"]

_FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def _fwd(backend: str, x, weight, bias, lora_A, lora_B, scale):
    if backend == "triton":
        return _ext.TRITON.module.lora_fwd_triton(x, weight, bias, lora_A, lora_B, scale)
    if backend == "cuda":
        return torch.ops.vlmteach_fast._lora_fwd_cuda(x, weight, bias, lora_A, lora_B, scale)
    if backend == "cpu":
        return torch.ops.vlmteach_fast._lora_fwd_cpu(x, weight, bias, lora_A, lora_B, scale)
    return lora_linear_fwd_ref(x, weight, bias, lora_A, lora_B, scale)


def _bwd(backend: str, grad_out, x, xa, weight, lora_A, lora_B, scale):
    if backend == "triton":
        return _ext.TRITON.module.lora_bwd_triton(grad_out, x, xa, weight, lora_A, lora_B, scale)
    if backend == "cuda":
        return torch.ops.vlmteach_fast._lora_bwd_cuda(grad_out, x, xa, weight, lora_A, lora_B, scale)
    if backend == "cpu":
        return torch.ops.vlmteach_fast._lora_bwd_cpu(grad_out, x, xa, weight, lora_A, lora_B, scale)
    return lora_linear_bwd_ref(grad_out, x, xa, weight, lora_A, lora_B, scale)


def _backend_for(x: Tensor, out_features: int, rank: int) -> str:
    """The backend for x (M, K): by device, and on CUDA by the measured table at this shape."""
    backend, _ = select_backend_for_shape(x.device, x.shape[0], x.shape[1], out_features, rank, x.dtype)
    # float64 is a testing dtype (gradcheck); only the reference and the CPU extension handle it.
    if x.dtype == torch.float64 and backend in ("triton", "cuda"):
        return "reference"
    return backend


def _forward_impl(x: Tensor, weight: Tensor, bias: Optional[Tensor], lora_A: Tensor, lora_B: Tensor,
                  scale: float) -> Tuple[Tensor, Tensor]:
    """(out (..., N), xa (..., r)) on the chosen backend; the body of the registered op and of the eager path."""
    lead, K = x.shape[:-1], x.shape[-1]
    x2 = x.reshape(-1, K)  # (M, K); a view when x's layout allows, strides are passed to the kernels
    if x2.shape[0] == 0:
        out, xa = x2.new_empty(0, weight.shape[0]), x2.new_empty(0, lora_A.shape[0])
    else:
        out, xa = _fwd(_backend_for(x2, weight.shape[0], lora_A.shape[0]), x2, weight, bias, lora_A, lora_B, scale)
    return out.reshape(*lead, weight.shape[0]), xa.reshape(*lead, lora_A.shape[0])


@torch.library.custom_op("vlmteach_fast::lora_linear", mutates_args=())
def _lora_linear_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], lora_A: Tensor, lora_B: Tensor,
                    scale: float) -> Tuple[Tensor, Tensor]:
    return _forward_impl(x, weight, bias, lora_A, lora_B, scale)


@_lora_linear_op.register_fake
def _(x, weight, bias, lora_A, lora_B, scale):
    lead = x.shape[:-1]
    return x.new_empty(*lead, weight.shape[0]), x.new_empty(*lead, lora_A.shape[0])


def _backward_impl(grad_out: Tensor, x: Tensor, xa: Tensor, weight: Tensor, lora_A: Tensor, lora_B: Tensor,
                   scale: float) -> Tuple[Tensor, Tensor, Tensor]:
    """(grad_x, grad_A, grad_B) on the chosen backend; the body of the registered op and of the eager path."""
    K, N, R = x.shape[-1], weight.shape[0], lora_A.shape[0]
    g2, x2, xa2 = grad_out.reshape(-1, N), x.reshape(-1, K), xa.reshape(-1, R)
    if g2.shape[0] == 0:
        return torch.zeros_like(x), torch.zeros_like(lora_A), torch.zeros_like(lora_B)
    grad_x, grad_A, grad_B = _bwd(_backend_for(x2, N, R), g2, x2, xa2, weight, lora_A, lora_B, scale)
    return grad_x.reshape(x.shape), grad_A, grad_B


@torch.library.custom_op("vlmteach_fast::lora_linear_backward", mutates_args=())
def _lora_linear_backward_op(grad_out: Tensor, x: Tensor, xa: Tensor, weight: Tensor, lora_A: Tensor,
                             lora_B: Tensor, scale: float) -> Tuple[Tensor, Tensor, Tensor]:
    return _backward_impl(grad_out, x, xa, weight, lora_A, lora_B, scale)


@_lora_linear_backward_op.register_fake
def _(grad_out, x, xa, weight, lora_A, lora_B, scale):
    return x.new_empty(x.shape), lora_A.new_empty(lora_A.shape), lora_B.new_empty(lora_B.shape)


def _save(ctx, x, xa, weight, bias, lora_A, lora_B, scale) -> None:
    ctx.scale = scale
    ctx.has_bias = bias is not None
    ctx.save_for_backward(x, xa, weight, lora_A, lora_B)


def _setup_context(ctx, inputs, output):
    x, weight, bias, lora_A, lora_B, scale = inputs
    _, xa = output
    ctx.mark_non_differentiable(xa)
    _save(ctx, x, xa, weight, bias, lora_A, lora_B, scale)


def _backward(ctx, grad_out, _grad_xa=None, backward_fn=None):
    """Chain rule (dY = grad_out, N out features, K in features, r rank):
    dX = dY W + s (dY B) A,  dA = s (dY B)^T X,  dB = s dY^T XA,  dW = dY^T X,  db = sum_tokens dY.
    dW and db are formed only when weight / bias require grad (frozen by default)."""
    x, xa, weight, lora_A, lora_B = ctx.saved_tensors
    backward_fn = backward_fn or torch.ops.vlmteach_fast.lora_linear_backward
    grad_x, grad_A, grad_B = backward_fn(grad_out, x, xa, weight, lora_A, lora_B, ctx.scale)
    grad_w = grad_b = None
    if ctx.needs_input_grad[1] or (ctx.has_bias and ctx.needs_input_grad[2]):
        g2 = grad_out.reshape(-1, weight.shape[0])  # (M, N)
        if ctx.needs_input_grad[1]:
            grad_w = g2.t() @ x.reshape(-1, x.shape[-1])  # (N, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = g2.sum(0)  # (N,)
    return (grad_x if ctx.needs_input_grad[0] else None), grad_w, grad_b, grad_A, grad_B, None


_lora_linear_op.register_autograd(_backward, setup_context=_setup_context)


class _EagerLoRALinear(torch.autograd.Function):
    """The same forward / backward without the op dispatcher, for eager mode: the registered op's dispatch costs
    ~50 us per call in forward and ~80 us in backward (measured on the dev CPU: 74 us vs 20 us for a 16 x 24 layer),
    which is most of the time of the small layers of tiny models. Under torch.compile the registered op is used."""

    @staticmethod
    def forward(ctx, x, weight, bias, lora_A, lora_B, scale):
        out, xa = _forward_impl(x, weight, bias, lora_A, lora_B, scale)
        _save(ctx, x, xa, weight, bias, lora_A, lora_B, scale)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        return _backward(ctx, grad_out, backward_fn=_backward_impl)


def _check(x: Tensor, weight: Tensor, bias: Optional[Tensor], lora_A: Tensor, lora_B: Tensor, scale) -> float:
    named = {"x": x, "weight": weight, "lora_A": lora_A, "lora_B": lora_B}
    if bias is not None:
        named["bias"] = bias
    for name, t in named.items():
        if not isinstance(t, Tensor):
            raise TypeError(f"`{name}` must be a torch.Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"`{name}` must be float32, float16 or bfloat16, got {t.dtype}")
    if x.dim() < 1:
        raise ValueError(f"`x` must have at least 1 dimension (..., in_features), got shape {tuple(x.shape)}")
    if weight.dim() != 2:
        raise ValueError(f"`weight` must have shape (out_features, in_features), got {tuple(weight.shape)}")
    N, K = weight.shape
    if x.shape[-1] != K:
        raise ValueError(f"`x` must have shape (..., in_features) = (..., {K}), got {tuple(x.shape)}")
    if lora_A.dim() != 2 or lora_A.shape[1] != K:
        raise ValueError(f"`lora_A` must have shape (r, in_features) = (r, {K}), got {tuple(lora_A.shape)}")
    r = lora_A.shape[0]
    if not 1 <= r <= 256:
        raise ValueError(f"`lora_A` rank must be in 1..256, got r = {r}")
    if lora_B.dim() != 2 or tuple(lora_B.shape) != (N, r):
        raise ValueError(f"`lora_B` must have shape (out_features, r) = ({N}, {r}), got {tuple(lora_B.shape)}")
    if bias is not None and tuple(bias.shape) != (N,):
        raise ValueError(f"`bias` must have shape (out_features,) = ({N},), got {tuple(bias.shape)}")
    for name, t in named.items():
        if t.dtype != x.dtype:
            raise TypeError(f"`{name}` must have the dtype of `x` ({x.dtype}), got {t.dtype}")
        if t.device != x.device:
            raise ValueError(f"`{name}` must be on the device of `x` ({x.device}), got {t.device}")
    if isinstance(scale, Tensor):
        if scale.numel() != 1:
            raise ValueError(f"`scale` must be a scalar, got a tensor of shape {tuple(scale.shape)}")
        scale = scale.item()
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise TypeError(f"`scale` must be a real number, got {type(scale).__name__}")
    if not math.isfinite(scale):
        raise ValueError(f"`scale` must be finite, got {scale}")
    return float(scale)


def lora_linear(x: Tensor, weight: Tensor, bias: Optional[Tensor], lora_A: Tensor, lora_B: Tensor,
                scale: float = 1.0) -> Tensor:
    """Fused LoRA linear layer: ``x @ weight.T + bias + scale * (x @ lora_A.T) @ lora_B.T``.

    Args:
        x: (..., in_features): tokens with any leading shape (2-D tokens to 5-D video tokens); may be non-contiguous.
        weight: (out_features, in_features), the frozen base weight (gets a gradient only if it requires grad).
        bias: (out_features,) or None.
        lora_A: (r, in_features), the down projection, 1 <= r <= 256.
        lora_B: (out_features, r), the up projection.
        scale: finite float, PEFT's ``lora_alpha / r`` (or ``lora_alpha / sqrt(r)`` with rsLoRA).

    All tensors share one dtype (float32, float16 or bfloat16; float64 for gradcheck) and one device.
    Accumulation is in fp32 on every backend. Returns (..., out_features) in x's dtype.
    The backend (triton | cuda | cpu | reference) is chosen per device and, on CUDA, per shape from the shipped
    measurements; see ``vlmteach_fast.ops.select_backend_for_shape``.
    """
    scale = _check(x, weight, bias, lora_A, lora_B, scale)
    if torch.compiler.is_compiling():
        out, _ = torch.ops.vlmteach_fast.lora_linear(x, weight, bias, lora_A, lora_B, scale)
        return out
    return _EagerLoRALinear.apply(x, weight, bias, lora_A, lora_B, scale)
