"""Differentiable vision preprocessing in torch: frame selection, resize (antialiased), normalize, patchify.

HF image processors run on PIL/numpy and cut the autograd graph; these functions do the same arithmetic on tensors so
the reward's gradient reaches the frame pixels. `tests/test_teacher_preprocess.py` checks them against the HF
processor on the same image.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch


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


def qwen3_video_smart_resize(num_frames: int, height: int, width: int, temporal_factor: int, factor: int,
                             min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Target (h, w) of a Qwen3-VL video's frames: like ``smart_resize``, but the pixel bounds hold for the whole
    clip (frames rounded to the temporal patch x h x w), and sides below ``factor`` are first scaled up to it --
    the arithmetic of transformers' Qwen3-VL video processor.
    """
    if num_frames < temporal_factor:
        raise ValueError(f"a Qwen3-VL clip needs at least {temporal_factor} frames, got {num_frames}")
    if height < factor or width < factor:
        scale = max(factor / height, factor / width)
        height, width = int(height * scale), int(width * scale)
    if max(height, width) / min(height, width) > 200:
        raise ValueError(f"frame aspect ratio must be below 200, got {height}x{width}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    t_bar = round(num_frames / temporal_factor) * temporal_factor
    if t_bar * h_bar * w_bar > max_pixels:
        beta = math.sqrt((num_frames * height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif t_bar * h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (num_frames * height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


def _bicubic(x: torch.Tensor) -> torch.Tensor:
    # Keys cubic with a = -0.5, PIL's BICUBIC (torch's non-antialiased bicubic uses a = -0.75).
    a, x = -0.5, x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = (((x - 5) * x + 8) * x - 4) * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


def _lanczos(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x.abs() < 3, torch.sinc(x) * torch.sinc(x / 3), torch.zeros_like(x))


def _bilinear(x: torch.Tensor) -> torch.Tensor:
    return (1 - x.abs()).clamp(min=0)


FILTERS = {"bicubic": (_bicubic, 2.0), "lanczos": (_lanczos, 3.0), "bilinear": (_bilinear, 1.0)}


def resample_weights(n_in: int, n_out: int, mode: str, dtype=torch.float32, device=None) -> torch.Tensor:
    """(n_out, n_in) matrix of PIL's 1-D resampling weights (Resample.c `precompute_coeffs`).

    On downscale the filter is stretched by the scale factor (antialiasing); each output's weights cover
    [center - support, center + support) clipped to the image and are normalized to sum 1.
    """
    if mode not in FILTERS:
        raise ValueError(f"mode must be one of {sorted(FILTERS)}, got {mode!r}")
    fn, support = FILTERS[mode]
    scale = n_in / n_out
    fscale = max(scale, 1.0)
    support = support * fscale
    center = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale
    lo = torch.floor(center - support + 0.5).clamp(min=0)
    hi = torch.floor(center + support + 0.5).clamp(max=n_in)
    x = torch.arange(n_in, dtype=torch.float64)
    w = fn((x[None, :] - center[:, None] + 0.5) / fscale)
    w = torch.where((x[None, :] >= lo[:, None]) & (x[None, :] < hi[:, None]), w, torch.zeros_like(w))
    return (w / w.sum(dim=1, keepdim=True)).to(device=device, dtype=dtype)


def resize_images(images: torch.Tensor, size: tuple[int, int], mode: str = "bicubic") -> torch.Tensor:
    """Resize (N, C, H, W) images in [0, 1] to `size` = (h, w), differentiably, the way PIL does.

    Each axis is a matmul with PIL's own resampling weights (`resample_weights`; antialiased on downscale), so
    LANCZOS (Idefics3/SmolVLM) is as exact as BICUBIC (Qwen-VL). PIL stores a uint8 image between its two passes,
    which clips the filter's overshoot there, so the pass order matters where overshoot happens (sharp edges, noise).
    The vertical pass runs first iff it downscales and reduces more than the horizontal one (h < H and H/h > W/w),
    with a clamp between and after: PIL's order in 264 of 273 noise pairs where it matters (docs/teachers.md,
    "Resizing like PIL"). PIL's uint8 rounding is not reproduced (it would zero every gradient); the clamps zero the
    gradient only on saturated pixels.
    """
    h, w = int(size[0]), int(size[1])
    H, W = images.shape[-2:]
    if (H, W) == (h, w):
        return images

    def along_w(x):
        return x @ resample_weights(x.shape[-1], w, mode, x.dtype, x.device).T if x.shape[-1] != w else x

    def along_h(x):
        return resample_weights(x.shape[-2], h, mode, x.dtype, x.device) @ x if x.shape[-2] != h else x

    first, second = (along_h, along_w) if (h < H and H * w > W * h) else (along_w, along_h)
    return second(first(images).clamp(0.0, 1.0)).clamp(0.0, 1.0)


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


def qwen_video_patchify(videos: torch.Tensor, patch_size: int, temporal_patch_size: int, merge_size: int):
    """Qwen-VL flat patch layout for B clips (the HF Qwen2-VL video processor's `patchify`, on tensors).

    Args:
        videos: (B, T, C, H, W) normalized; T is padded to a multiple of temporal_patch_size by repeating the last
            frame, as the HF processor does.
    Returns:
        pixel_values: (B * gt * gh * gw, C * temporal_patch_size * patch_size**2), consecutive frames of a temporal
            patch side by side, so a clip of one frame repeated equals `qwen_patchify` of that frame;
        grid_thw: (B, 3) int64 rows (gt, gh, gw).
    """
    b, t, c, h, w = videos.shape
    factor = patch_size * merge_size
    if h % factor or w % factor:
        raise ValueError(f"frame size must be a multiple of {factor}, got {h}x{w}")
    if pad := -t % temporal_patch_size:
        videos = torch.cat([videos, videos[:, -1:].expand(-1, pad, -1, -1, -1)], dim=1)
        t += pad
    gt, gh, gw = t // temporal_patch_size, h // patch_size, w // patch_size
    x = videos.reshape(b, gt, temporal_patch_size, c, gh // merge_size, merge_size, patch_size,
                       gw // merge_size, merge_size, patch_size)
    x = x.permute(0, 1, 4, 7, 5, 8, 3, 2, 6, 9)  # (B, gt, gh/m, gw/m, m, m, C, tp, p, p)
    pixel_values = x.reshape(b * gt * gh * gw, c * temporal_patch_size * patch_size * patch_size)
    grid = torch.tensor([[gt, gh, gw]] * b, dtype=torch.long, device=videos.device)
    return pixel_values, grid
