"""The one loader for compiled and optional code.

Each backend gets a flag and a reason. A backend that is missing or fails to load produces a single warning saying
what is missing, what it was built for and what is installed; the ops then fall back (CPU tensors: cpu extension ->
reference; CUDA tensors use the reference unless a backend is forced, see ``ops.dispatch``). Nothing here queries a device
at import time; ``triton_usable(device)`` decides lazily.
"""

import importlib
import os
import warnings
from dataclasses import dataclass

import torch

__all__ = ["Backend", "CPU_EXT", "CUDA_EXT", "TRITON", "backends", "triton_usable"]


@dataclass
class Backend:
    """Availability of one optional backend: ``ok`` and, either way, ``reason`` (shown by ``vlmteach-fast doctor``)."""

    name: str
    ok: bool
    reason: str
    module: object = None


def _torch_desc() -> str:
    return f"torch {torch.__version__} (CUDA {torch.version.cuda or 'none'})"


def _load_extension(backend: str, name: str, wanted: bool, why_unwanted: str) -> Backend:
    if not wanted:
        return Backend(backend, False, why_unwanted)
    try:
        mod = importlib.import_module(f"vlmteach_fast.{name}")
    except ImportError as err:
        msg = str(err)
        if "No module named" in msg:
            how = ("docs/kernels.md, 'Building the CUDA extension'" if backend == "cuda" else
                   "docs/packaging.md: build with --no-build-isolation against the installed torch")
            reason = f"vlmteach_fast.{name} is not built (see {how}; installed {_torch_desc()})"
        else:  # built, but for another torch / CUDA: the loader says which symbol or library is missing
            reason = f"vlmteach_fast.{name} failed to load with {_torch_desc()}: {msg}"
        return Backend(backend, False, reason)
    built = getattr(mod, "torch_version", "?")
    return Backend(backend, True, f"vlmteach_fast.{name} loaded (built with torch {built})", mod)


def _load_triton() -> Backend:
    try:
        kernels = importlib.import_module("vlmteach_fast.kernels")
        import triton
    except Exception as err:  # noqa: BLE001 - ImportError, or a broken install raising at import: fall back
        return Backend("triton", False, f"triton kernels unavailable: {type(err).__name__}: {err}")
    return Backend("triton", True, f"triton {triton.__version__}", kernels)


_DISABLED = {s.strip() for s in os.environ.get("VLMTEACH_DISABLE", "").split(",") if s.strip()}

CPU_EXT = _load_extension("cpu", "_C_cpu", "cpu" not in _DISABLED, "disabled by VLMTEACH_DISABLE")
CUDA_EXT = _load_extension(
    "cuda",
    "_C_cuda",
    "cuda" not in _DISABLED and torch.version.cuda is not None,
    "disabled by VLMTEACH_DISABLE" if "cuda" in _DISABLED else f"{_torch_desc()} is a CPU-only build",
)
TRITON = (_load_triton() if "triton" not in _DISABLED
          else Backend("triton", False, "disabled by VLMTEACH_DISABLE"))


def triton_usable(device: torch.device) -> bool:
    """Triton runs on CUDA tensors, and on CPU tensors only under TRITON_INTERPRET=1 (the test path)."""
    if not TRITON.ok:
        return False
    if device.type == "cuda":
        return True
    return device.type == "cpu" and os.environ.get("TRITON_INTERPRET", "0") == "1"


def backends() -> dict:
    return {b.name: b for b in (TRITON, CUDA_EXT, CPU_EXT)}


def _warn_once() -> None:
    # One warning for everything missing that this machine could have used. A CPU-only torch is not "missing" CUDA.
    missing = [b.reason for b in (CPU_EXT,) if not b.ok and "disabled" not in b.reason]
    if torch.version.cuda is not None:
        missing += [b.reason for b in (CUDA_EXT, TRITON) if not b.ok and "disabled" not in b.reason]
    if missing:
        warnings.warn("vlmteach_fast: falling back to slower paths; " + "; ".join(missing), RuntimeWarning,
                      stacklevel=3)


_warn_once()
