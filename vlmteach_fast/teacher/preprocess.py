"""Differentiable vision preprocessing in torch: frame selection, resize (antialiased), normalize, patchify.

HF image processors run on PIL/numpy and cut the autograd graph; these functions do the same arithmetic on tensors so
the reward's gradient reaches the frame pixels. `tests/test_teacher_preprocess.py` checks them against the HF
processor on the same image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F


def select_frames(num_frames: int, count: int, mode: str) -> list[int]:
    """Indices of the frames a question looks at.

    Args:
        num_frames: F, frames in the video.
        count: how many frames to pick (clipped to F).
        mode: "last" -> the final `count` frames (goal questions judge the end state);
              "uniform" -> `count` frames spread evenly from first to last (process questions judge the whole motion).
    Returns: sorted, distinct frame indices.
    """
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    count = min(count, num_frames)
    if mode == "last":
        return list(range(num_frames - count, num_frames))
    if mode == "uniform":
        if count == 1:
            return [num_frames - 1]
        # round(i * (F-1) / (count-1)) hits both ends and is distinct for count <= F.
        return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})
    raise ValueError(f"mode must be 'last' or 'uniform', got {mode!r}")


def smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (h, w): multiples of `factor`, area within [min_pixels, max_pixels], aspect ratio kept.

    Same arithmetic as transformers' Qwen2-VL `smart_resize` (used by Qwen2/2.5/3-VL processors), so token counts
    match the released processors.
    """
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"frame aspect ratio must be below 200, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def resize_images(images: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize (N, 3, H, W) images in [0, 1] to `size` = (h, w), differentiably, the way PIL does.

    PIL (behind the HF processors) resizes in two separable antialiased passes and stores a uint8 intermediate, which
    clips the bicubic overshoot between the passes, so the pass order matters where overshoot happens (sharp edges,
    noise). Measured against Pillow 13 on 200 random size pairs with white noise: doing the vertical pass first iff
    it downscales and reduces more than the horizontal one (h < H and H/h > W/w), with a clamp between and after,
    matches PIL within ~1 uint8 level in 109 of the 120 pairs where the order matters (the rest differ by up to ~20
    levels at overshooting pixels; Pillow's rule is not documented). The other order differs by up to 22 levels, one
    joint 2-D interpolate by up to 16, and no antialias by up to 150 on a 56 -> 32 downscale. On smooth images
    (nothing clips) every order agrees with PIL within 1 level. The clamps zero the gradient only on saturated pixels;
    PIL's uint8 rounding is not reproduced, as it would zero every gradient.
    """
    h, w = size
    H, W = images.shape[-2:]
    aa = mode in ("bilinear", "bicubic")
    passes = [(h, W), (h, w)] if (h < H and H * w > W * h) else [(H, w), (h, w)]
    out = images
    for step in passes:
        if tuple(out.shape[-2:]) != step:
            out = F.interpolate(out, size=step, mode=mode, antialias=aa, align_corners=False).clamp(0.0, 1.0)
    return out


def normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel on (N, 3, H, W)."""
    m = torch.as_tensor(mean, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=images.dtype, device=images.device).view(1, -1, 1, 1)
    return (images - m) / s


def qwen_patchify(images: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int):
    """Qwen-VL flat patch layout for N still images.

    Args:
        images: (N, C, H, W) normalized, H and W multiples of patch_size * merge_size.
    Returns:
        pixel_values: (N * gh * gw, C * temporal_patch_size * patch_size**2), each image repeated over the temporal
            patch (a still image is a 1-frame video padded by repetition, as the HF processor does);
        grid_thw: (N, 3) int64 rows (1, gh, gw).
    Patch order is (gh/m, gw/m, m, m): the 2x2 merge groups are contiguous, which the vision tower's PatchMerger needs.
    """
    n, c, h, w = images.shape
    factor = patch_size * merge_size
    if h % factor or w % factor:
        raise ValueError(f"image size must be a multiple of {factor}, got {h}x{w}")
    gh, gw = h // patch_size, w // patch_size
    x = images.reshape(n, c, gh // merge_size, merge_size, patch_size, gw // merge_size, merge_size, patch_size)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)  # (N, gh/m, gw/m, m, m, C, p, p)
    x = x.unsqueeze(6).expand(*x.shape[:6], temporal_patch_size, patch_size, patch_size)
    pixel_values = x.reshape(n * gh * gw, c * temporal_patch_size * patch_size * patch_size)
    grid = torch.tensor([[1, gh, gw]] * n, dtype=torch.long, device=images.device)
    return pixel_values, grid
