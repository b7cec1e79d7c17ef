"""Loading models from user-given sources, and the cheap checks that run before any model loads (so a typo never
costs a model load). Used by ``vlmteach-fast solve`` and by the benchmark runner (``evaluate/models.py``).
"""

from __future__ import annotations

import os
import tempfile

import torch

__all__ = ["check_source", "check_out_dir", "default_dtype", "load_pipeline", "load_teacher"]


def check_source(value: str, arg: str) -> str:
    """A model source: local paths (starting with ``.``, ``/``, ``~`` or existing) must be folders; anything else is
    taken as a hub id (loaded only from the local cache when offline). Returns the expanded path or the id.
    ``FileNotFoundError`` naming ``arg`` otherwise."""
    path = os.path.expanduser(value)
    looks_local = value.startswith((".", "/", "~")) or os.path.exists(path)
    if looks_local and not os.path.isdir(path):
        raise FileNotFoundError(f"{arg} directory not found: {value!r}")
    return path if looks_local else value


def check_out_dir(out: str, arg: str = "--out") -> None:
    """Create ``out`` and prove it writable by writing a probe file (``os.access`` says yes to root even on a
    read-only mount). Nothing already in it is touched. ``NotADirectoryError`` / ``PermissionError`` otherwise."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise NotADirectoryError(f"{arg} {out!r} exists and is not a directory")
    try:
        os.makedirs(out, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-probe-"):
            pass
    except OSError as err:
        raise PermissionError(f"{arg} directory {out!r} is not writable ({err.strerror or err})") from err


def default_dtype(device: torch.device, name: str | None = None) -> torch.dtype:
    """``torch.<name>`` if given, else bfloat16 on CUDA and float32 elsewhere (CPU bf16 matmuls are slow)."""
    if name:
        dtype = getattr(torch, name, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"`dtype` must name a torch dtype (float32, bfloat16, float16), got {name!r}")
        return dtype
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_pipeline(source: str, device, dtype, trust_remote_code: bool = False):
    """A diffusers pipeline from a folder or hub id, moved to ``device``; ``RuntimeError`` naming the source."""
    from diffusers import DiffusionPipeline

    try:
        pipe = DiffusionPipeline.from_pretrained(source, torch_dtype=dtype, use_safetensors=True,
                                                 trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        raise RuntimeError(f"--pipeline {source!r} could not be loaded as a diffusers pipeline: {err}") from err
    return pipe.to(device)


def load_teacher(source: str, device, dtype, trust_remote_code: bool = False):
    """A ``VLMTeacher`` from a folder or hub id (checked with :func:`check_source`)."""
    from .teacher import VLMTeacher

    return VLMTeacher.from_pretrained(check_source(source, "--teacher"), dtype=dtype, device=device,
                                      trust_remote_code=trust_remote_code)
