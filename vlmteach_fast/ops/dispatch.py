"""Backend choice for every op: by device, availability and the user's override.

Order of preference: CPU tensors use the C++ CPU extension, then the reference. CUDA tensors use the reference
(cuBLAS matmuls) unless the shipped measurements (``measured.py``, written by bench/gpu_check.sh step 3) show a
usable kernel faster than it on this GPU at the nearest measured shape (``select_backend_for_shape``).
Triton on CPU tensors is used only when forced under TRITON_INTERPRET=1 (tests).
Override with ``use_backend("reference")`` (a context manager), ``set_backend`` or the environment variable
``VLMTEACH_BACKEND``.
"""

import contextlib
import os
from typing import Iterator, List, Optional, Tuple

import torch

from .. import _ext
from . import measured

BACKENDS = ("triton", "cuda", "cpu", "reference")

_forced: Optional[str] = None
_choice_cache: dict = {}  # (device type, forced) -> (backend, reason): availability is fixed after import
_shape_cache: dict = {}  # (device index, tokens, K, N, r, dtype) -> (backend, reason), CUDA only, not forced


def _check_name(name: Optional[str], arg: str) -> Optional[str]:
    if name is not None and name not in BACKENDS and name != "auto":
        raise ValueError(f"`{arg}` must be one of {BACKENDS + ('auto',)}, got {name!r}")
    return None if name in (None, "auto") else name


def set_backend(name: Optional[str]) -> None:
    """Force one backend for all ops (``None`` or ``"auto"`` restores automatic choice)."""
    global _forced
    _forced = _check_name(name, "name")


_ENV_BACKEND = _check_name(os.environ.get("VLMTEACH_BACKEND") or None, "VLMTEACH_BACKEND")


def get_backend() -> Optional[str]:
    """The forced backend, if any (``set_backend`` / ``use_backend`` / ``VLMTEACH_BACKEND`` read at import)."""
    return _forced or _ENV_BACKEND


@contextlib.contextmanager
def use_backend(name: Optional[str]) -> Iterator[None]:
    """Force a backend inside a ``with`` block, e.g. ``with use_backend("reference"): ...``."""
    global _forced
    previous, _forced = _forced, _check_name(name, "name")
    try:
        yield
    finally:
        _forced = previous


def _why_not(name: str, device: torch.device) -> Optional[str]:
    """None when backend ``name`` can run on ``device``, else the reason it cannot."""
    if name == "reference":
        return None
    if name == "triton":
        if not _ext.TRITON.ok:
            return _ext.TRITON.reason
        return None if _ext.triton_usable(device) else f"triton needs CUDA tensors (or TRITON_INTERPRET=1), got {device}"
    ext = _ext.CUDA_EXT if name == "cuda" else _ext.CPU_EXT
    if not ext.ok:
        return ext.reason
    if device.type != name:
        return f"the {name} extension runs on {name} tensors, got {device}"
    return None


def available_backends(device: torch.device) -> List[str]:
    """Backends that can run on ``device`` on this machine, in preference order."""
    return [b for b in BACKENDS if _why_not(b, device) is None]


def select_backend(device: torch.device) -> Tuple[str, str]:
    """(backend, reason) for tensors on ``device``; raises RuntimeError when a forced backend cannot run there.

    Memoized per (device type, forced backend): it runs on every op call, and availability does not change after
    import (TRITON_INTERPRET is read once, as triton itself does)."""
    forced = get_backend()
    key = (device.type, forced)
    hit = _choice_cache.get(key)
    if hit is not None:
        return hit
    choice = _select(device, forced)
    _choice_cache[key] = choice
    return choice


def _select(device: torch.device, forced: Optional[str]) -> Tuple[str, str]:
    if forced is not None:
        why = _why_not(forced, device)
        if why is not None:
            raise RuntimeError(f"backend {forced!r} was forced but cannot run: {why}")
        return forced, "forced"
    order = ("reference",) if device.type == "cuda" else ("cpu", "reference")
    skipped = []
    for name in order:
        why = _why_not(name, device)
        if why is None:
            return name, ("preferred for " + device.type) if not skipped else "; ".join(skipped)
        skipped.append(f"{name}: {why}")
    return "reference", "; ".join(skipped)


def select_backend_for_shape(device: torch.device, tokens: int, in_features: int, out_features: int, rank: int,
                             dtype: torch.dtype) -> Tuple[str, str]:
    """(backend, reason) for one call of the LoRA op: ``select_backend`` on CPU tensors or when a backend is forced;
    on CUDA tensors the measured table (``measured.choose``), memoized per shape."""
    choice = select_backend(device)
    if device.type != "cuda" or get_backend() is not None:
        return choice
    key = (device.index, tokens, in_features, out_features, rank, dtype)
    hit = _shape_cache.get(key)
    if hit is None:
        hit = measured.choose(measured.load_table(), torch.cuda.get_device_name(device), tokens, in_features,
                              out_features, rank, str(dtype).removeprefix("torch."),
                              lambda name: _why_not(name, device) is None)
        _shape_cache[key] = hit
    return hit
