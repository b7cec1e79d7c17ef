"""Random views of the frames for a reward that is harder to hack.

A perturbation the generator cannot anticipate (noise, 1-pixel shifts) makes pixel-level adversarial patterns cost
more than actually solving the task: on a prototype world, averaging the score over 8 such views was part of the best
setup (23% rule pass vs Best-of-5's 3%). Measurements: docs/method.md, "Reward hacking".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_views(frames: torch.Tensor, num_views: int, noise_std: float, max_shift: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """K perturbed copies of every video, differentiable w.r.t. `frames`.

    Args:
        frames: (B, F, 3, H, W) float in [0, 1].
        num_views: K >= 1.
        noise_std: std of i.i.d. Gaussian pixel noise (0 disables), added before clamping to [0, 1].
        max_shift: each view is translated by integers (dy, dx) drawn from [-max_shift, max_shift], the same for all
            frames of a view (a shift per frame would read as motion to process questions); borders replicate.
        generator: optional torch.Generator for reproducible views.
    Returns: (B * K, F, 3, H, W), video-major: rows b*K .. b*K + K - 1 are video b's views.
    """
    if num_views < 1:
        raise ValueError(f"num_views must be >= 1, got {num_views}")
    if noise_std < 0 or max_shift < 0:
        raise ValueError(f"noise_std and max_shift must be >= 0, got {noise_std} and {max_shift}")
    B, Fr, C, H, W = frames.shape
    x = frames.repeat_interleave(num_views, dim=0)  # (B*K, F, C, H, W)
    if max_shift > 0:
        s = max_shift
        padded = F.pad(x.reshape(B * num_views, Fr * C, H, W), (s, s, s, s), mode="replicate")
        shifts = torch.randint(-s, s + 1, (B * num_views, 2), generator=generator)
        crops = [padded[i, :, s + dy: s + dy + H, s + dx: s + dx + W] for i, (dy, dx) in enumerate(shifts.tolist())]
        x = torch.stack(crops).view(B * num_views, Fr, C, H, W)
    if noise_std > 0:
        noise = torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
        x = (x + noise_std * noise).clamp(0.0, 1.0)
    return x
