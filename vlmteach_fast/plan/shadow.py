"""Shape-only execution: run the library's own code paths on models whose weights live on the meta device, and
account every phase's peak live bytes, FLOPs and bytes moved, at real shapes, on a CPU, in seconds.

``ShapeOnlyRun`` is a ``TorchDispatchMode`` over ``TensorMemoryTracker``:
- floating-point tensors live on the meta device (shape, dtype and storage size, no data); integer and bool tensors
  (token ids, grid sizes, masks) stay real, so code that reads them (``tolist``, index arithmetic) runs as it would;
  an op that mixes the two runs on meta;
- a value read from a meta tensor (a range check, ``isfinite(...).all()``, a score for the log) is neutral (0, 0.0,
  True);
- ``scaled_dot_product_attention`` runs as the memory-efficient (flash) kernel a GPU runs: output and log-sum-exp
  kept, never the (L, S) attention matrix (``attention_kernel``);
- a copy to the host (an offloaded model) stays shape-only and leaves the account;
- every storage an op creates is counted until freed (the tracker's weak references), so activations kept for
  backward, checkpoint recomputation and the optimizer's states are in the peak as they are on a device.
The same mode on real CPU tensors (``meta=False``) gives the numbers a real run allocates, which is how the tests pin
the shape-only numbers at tiny shapes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import flop_registry

from ..reasoner.memory import TensorMemoryTracker

__all__ = ["PhaseAccount", "ShapeOnlyRun", "attention_kernel", "flash_sdpa"]

META = torch.device("meta")
_aten = torch.ops.aten
# The flop formulas of the GPU's flash kernels count the CPU flash kernel used here (same shapes, same work).
_FLOPS_AS = {_aten._scaled_dot_product_flash_attention_for_cpu: _aten._scaled_dot_product_flash_attention,
             _aten._scaled_dot_product_flash_attention_for_cpu_backward:
                 _aten._scaled_dot_product_flash_attention_backward}


@dataclass
class PhaseAccount:
    """One phase: ``peak_bytes`` (live bytes at its peak, everything alive included: weights, optimizer states,
    what earlier phases keep), ``peak_op`` (the op that reached it), ``flops``, ``bytes_moved`` (inputs + outputs of
    every op that is not a view) and ``kernels`` (those ops: one launch each on a GPU)."""

    peak_bytes: int = 0
    peak_op: str = ""
    flops: int = 0
    bytes_moved: int = 0
    kernels: int = 0
    ops: list = field(default_factory=list, repr=False)  # (flops, bytes) per kernel, for the roofline

    def to_dict(self) -> dict:
        return {"peak_bytes": self.peak_bytes, "peak_op": self.peak_op, "flops": self.flops,
                "bytes_moved": self.bytes_moved, "kernels": self.kernels}


def _to_meta(a):
    return a.to(META) if isinstance(a, torch.Tensor) and not a.is_meta else a


def _integral(func, args, kwargs) -> bool:
    """Whether the op's result is an integer or bool tensor (a copy, or a factory such as ``arange``)."""
    out = func(*args, **kwargs)  # on meta: shapes only, no cost
    return isinstance(out, torch.Tensor) and not (out.is_floating_point() or out.is_complex())


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _flops(func, args, kwargs, out) -> int:
    formula = flop_registry.get(_FLOPS_AS.get(func.overloadpacket, func.overloadpacket))
    if formula is None:
        return 0
    return int(formula(*args, **kwargs, out_val=out))


class ShapeOnlyRun(TensorMemoryTracker):
    """``with ShapeOnlyRun() as run: run.adopt(model); with run.phase("predict"): ...``; then ``run.phases``.

    Args:
        meta: True (default) for models on the meta device; False to account a real run the same way (tests).
    """

    def __init__(self, meta: bool = True):
        super().__init__(meta=None)  # float tensors on any device: the shape-only ones and a few real ones (the frame)
        self._shape_only = meta
        self._quiet = False  # inside one counted kernel: its parts are not counted again
        self.phases: dict[str, PhaseAccount] = {}
        self._current: PhaseAccount | None = None
        self._context = contextlib.ExitStack()

    def __enter__(self):
        self._context.enter_context(attention_kernel())
        self._context.enter_context(_HostData())
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._context.close()

    def adopt(self, *objects) -> int:
        """Count tensors that exist already (a module's parameters and buffers, or tensors) as live; returns the
        bytes added. A storage shared by several tensors counts once."""
        before = self.current_bytes
        for obj in objects:
            tensors = (list(obj.parameters()) + list(obj.buffers())) if isinstance(obj, torch.nn.Module) else [obj]
            for t in tensors:
                self._track(t)
        return self.current_bytes - before

    @contextlib.contextmanager
    def phase(self, name: str):
        """Account the block as phase ``name`` (entered again, it adds to the same account)."""
        account = self.phases.setdefault(name, PhaseAccount())
        account.peak_bytes = max(account.peak_bytes, self.current_bytes)
        previous, self._current = self._current, account
        try:
            yield account
        finally:
            self._current = previous

    def _track(self, t: torch.Tensor) -> None:
        if not (t.is_floating_point() or t.is_complex()):  # ids, grids, masks: real in either mode, a few KB
            return
        super()._track(t)
        account = self._current
        if account is not None and self.current_bytes > account.peak_bytes:
            account.peak_bytes = self.current_bytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self._quiet:
            return func(*args, **kwargs)
        tensors = [a for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)]
        if self._shape_only:
            if func is _aten._local_scalar_dense.default and tensors[0].is_meta:
                t = tensors[0]
                self._count(func, tensors, (), 0)
                return True if t.dtype == torch.bool else (0.0 if t.is_floating_point() else 0)
            if kwargs.get("device") == META and not any(t.is_meta for t in tensors) and _integral(func, args, kwargs):
                # ids, grids and masks stay on the host, readable; moving one there without a dtype change is a
                # no-op, as in a real CPU run
                if func is _aten._to_copy.default and kwargs.get("dtype") in (None, tensors[0].dtype):
                    return tensors[0]
                kwargs = {k: v for k, v in kwargs.items() if k != "device"}
            elif (func is _aten._to_copy.default and tensors[0].is_meta and kwargs.get("device") is not None
                  and kwargs["device"] != META):  # device to host (an offload): host memory, not the device's
                return func(*args, **{**kwargs, "device": META})
            elif func is _aten.fill_.Tensor and args[0].is_meta:  # one kernel, as on the host: the meta kernel
                self._quiet = True                                   # splits it into ops this mode would count
                try:
                    out = func(*tree_map(_to_meta, args), **kwargs)
                finally:
                    self._quiet = False
                self._count(func, tensors, [out], 0)
                return out
            elif any(t.is_meta for t in tensors):
                args, kwargs = tree_map(_to_meta, args), tree_map(_to_meta, kwargs)
        out = func(*args, **kwargs)
        if (self._shape_only and func is _aten._to_copy.default and kwargs.get("device") == META
                and not tensors[0].is_meta):  # host to device: the device copy takes the host tensor's place in
            self._forget(tensors[0])         # the account (in a real CPU run it is the same tensor, no kernel)
            self._track(out)
            if out.dtype != tensors[0].dtype:  # a conversion: a kernel on either side
                self._count(func, tensors, [out], 0)
            return out
        outs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if not func.is_view:
            self._count(func, tensors, outs, _flops(func, args, kwargs, out))
        account = self._current
        for t in outs:
            before = account.peak_bytes if account is not None else 0
            self._track(t)
            if account is not None and account.peak_bytes > before:
                account.peak_op = str(func)
        return out

    def _count(self, func, inputs, outputs, flops: int) -> None:
        """One kernel of the current phase: its FLOPs and the bytes it reads and writes."""
        account = self._current
        if account is None:
            return
        moved = sum(_nbytes(t) for t in inputs) + sum(_nbytes(t) for t in outputs)
        account.flops += flops
        account.bytes_moved += moved
        account.kernels += 1
        account.ops.append((flops, moved))

    def _forget(self, t: torch.Tensor) -> None:
        """Stop counting ``t``'s storage (it is still alive, elsewhere)."""
        st = t.untyped_storage()
        if self._seen.pop(id(st), None) is not None:
            self.current_bytes -= st.nbytes()


class _HostData(TorchFunctionMode):
    """Data made from Python for a meta device (``torch.tensor(..., device="meta")``, which reaches no dispatch
    mode) stays on the host when it is integral; a list read from a meta tensor (a score for a log) is neutral."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in (torch.tensor, torch.as_tensor) and kwargs.get("device") is not None \
                and torch.device(kwargs["device"]) == META:
            out = func(*args, **{**kwargs, "device": "cpu"})
            return out if not out.is_floating_point() else out.to(META)
        if func is torch.Tensor.tolist and args[0].is_meta:
            return torch.zeros(args[0].shape, dtype=args[0].dtype).tolist()
        return func(*args, **kwargs)


def flash_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    """``F.scaled_dot_product_attention`` as a flash kernel: the output and a float32 log-sum-exp per query are
    what it allocates and keeps for backward (as FlashAttention and cuDNN do on a GPU), not the attention matrix
    that the math fallback of a CPU or meta tensor would build. Same arguments and result."""
    if dropout_p:
        return _SDPA(query, key, value, attn_mask, dropout_p, is_causal, scale=scale, enable_gqa=enable_gqa)
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        rep = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(rep, dim=-3), value.repeat_interleave(rep, dim=-3)
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # the kernel takes an additive mask
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device).masked_fill(
            ~attn_mask, float("-inf"))
    return _aten._scaled_dot_product_flash_attention_for_cpu(
        query, key, value, 0.0, bool(is_causal), attn_mask=attn_mask, scale=scale)[0]


_SDPA = F.scaled_dot_product_attention


@contextlib.contextmanager
def attention_kernel():
    """Inside, ``torch.nn.functional.scaled_dot_product_attention`` is ``flash_sdpa`` (an attribute swap, so the
    recomputation of a checkpoint in backward, which may run on another thread, sees it too)."""
    F.scaled_dot_product_attention = flash_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = _SDPA
