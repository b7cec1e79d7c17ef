"""Seconds from an account: a roofline per kernel, bounded below by the host's time to issue the kernels.

A phase takes ``max(sum over kernels of max(flops / (peak_flops * flops_eff), bytes / (bandwidth * bandwidth_eff)),
kernels * host_seconds_per_kernel)``: the device runs the kernels at a fraction of its peak rates, and the host
(eager PyTorch: Python, dispatch, launch) issues them at a fixed cost each, ahead of the device. At real shapes the
denoiser's sampling and the VAE are device-bound, and the teacher's forward and backward (10-17 thousand small
kernels) are host-bound. The three numbers were fitted once to the H200 phase times of the GPU check
(bench/plan_vs_gpu.py refits them and prints the comparison) and are used for every device, scaled by its peak rates.
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
    """Fractions of the peak rates a kernel reaches, and the host's seconds per kernel."""

    flops: float
    bandwidth: float
    host_seconds_per_kernel: float


# Fitted to 32 H200 phase times (480p x 49: one-step, block checkpointing, k-step 2; 704p x 121 with block
# checkpointing; phases >= 10 ms): rms error of log seconds 0.145 (bench/RESULTS.md, "Planning").
EFFICIENCY = Efficiency(flops=0.55, bandwidth=0.5, host_seconds_per_kernel=46e-6)


def phase_seconds(ops, device: Device, eff: Efficiency = EFFICIENCY) -> float:
    """Seconds of a phase from its kernels' (flops, bytes) pairs (``PhaseAccount.ops``, or an (n, 2) array)."""
    ops = np.asarray(ops, dtype=np.float64).reshape(-1, 2)
    on_device = np.maximum(ops[:, 0] / (device.flops * eff.flops), ops[:, 1] / (device.bandwidth * eff.bandwidth))
    return float(max(on_device.sum(), len(ops) * eff.host_seconds_per_kernel))
