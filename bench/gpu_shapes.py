"""Real model shapes with random weights for the GPU check (bench/gpu_check.sh steps 4-6): the named shapes of
``vlmteach_fast.plan.shapes`` plus a per-phase clock and the device choice.
"""

from __future__ import annotations

import contextlib
import os

import torch

if torch.version.cuda is None:  # as in tests/ and bench/conftest.py: Triton on CPU tensors only through the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

from vlmteach_fast.plan.shapes import (  # noqa: E402,F401  (re-exported for the bench scripts)
    DRY_GEOMETRY, GEOMETRIES, QUESTIONS, first_frame, qwen25_vl_teacher, qwen_configs, wan_configs, wan_ti2v_pipeline,
)


def device_and_dtype(dry: bool) -> tuple[torch.device, torch.dtype]:
    """CUDA + bf16 for the real run; CPU for the dry run, bf16 too (so the dry run exercises the dtype path)."""
    if dry or not torch.cuda.is_available():
        return torch.device("cpu"), torch.bfloat16
    return torch.device("cuda"), torch.bfloat16


class PhaseClock:
    """Seconds and peak memory of named phases. CUDA: synchronized wall time and ``max_memory_allocated`` (bytes,
    weights included) per phase. CPU: wall time and the peak bytes of tensors created in the phase
    (``TensorMemoryTracker``; weights excluded)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.seconds: dict[str, float] = {}
        self.peak_bytes: dict[str, int] = {}

    @contextlib.contextmanager
    def phase(self, name: str):
        import time

        from vlmteach_fast.reasoner import TensorMemoryTracker

        cuda = self.device.type == "cuda"
        tracker = contextlib.nullcontext() if cuda else TensorMemoryTracker()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        with tracker as mem:
            yield
            if cuda:
                torch.cuda.synchronize()
        self.seconds[name] = time.perf_counter() - t0
        self.peak_bytes[name] = torch.cuda.max_memory_allocated() if cuda else mem.peak_bytes

    def report(self) -> dict:
        return {"seconds": dict(self.seconds), "peak_bytes": dict(self.peak_bytes),
                "peak_kind": "cuda_max_memory_allocated" if self.device.type == "cuda" else "tensors_created_cpu"}


def environment(device: torch.device) -> dict:
    """Device name and versions for a result file."""
    from vlmteach_fast.evaluate.throughput import environment_info

    info = environment_info()
    info["device"] = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    return info
