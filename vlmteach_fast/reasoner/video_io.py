"""Frames in and out: checking and normalising a conditioning image, writing videos (MP4, GIF) with imageio."""

from __future__ import annotations

import os

import numpy as np
import torch

from ..checks import check_int
from ..io_atomic import atomic_path

__all__ = ["image_to_tensor", "tensor_to_pil", "export_video"]


def image_to_tensor(image, height: int, width: int) -> torch.Tensor:
    """Check a conditioning image and return it as (1, 3, height, width) float32 in [-1, 1] (the VAE's input range).

    Args:
        image: a ``PIL.Image`` in mode ``"RGB"`` of size (width, height), or a float tensor (3, H, W) or (1, 3, H, W)
            with values in [0, 1]. It is never resized: a silent resize would change what the model sees.
        height, width: the video's frame size in pixels.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with diffusers
        Image = None
    if Image is not None and isinstance(image, Image.Image):
        if image.mode != "RGB":
            raise ValueError(f"`image` must be an RGB PIL image, got mode {image.mode!r}; use image.convert('RGB')")
        if image.size != (width, height):
            raise ValueError(
                f"`image` must have size (width, height) = ({width}, {height}), got {image.size}; resize it first"
            )
        arr = np.asarray(image, dtype=np.float32) / 255.0  # (H, W, 3)
        x = torch.from_numpy(arr.copy()).permute(2, 0, 1).unsqueeze(0)
    elif torch.is_tensor(image):
        x = image.detach()
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] != 3:
            raise ValueError(f"`image` tensor must have shape (3, H, W) or (1, 3, H, W), got {tuple(image.shape)}")
        if not x.is_floating_point():
            raise TypeError(f"`image` tensor must be floating point with values in [0, 1], got dtype {x.dtype}")
        if tuple(x.shape[-2:]) != (height, width):
            raise ValueError(
                f"`image` must have spatial size (height, width) = ({height}, {width}), got {tuple(x.shape[-2:])}"
            )
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"`image` tensor values must lie in [0, 1], got range [{lo:.3g}, {hi:.3g}]")
        x = x.to(torch.float32).cpu()
    else:
        raise TypeError(f"`image` must be a PIL.Image or a torch.Tensor, got {type(image).__name__}")
    return x * 2.0 - 1.0


def tensor_to_pil(image: torch.Tensor):
    """(1, 3, H, W) in [-1, 1] -> PIL RGB image (for image encoders whose processors take PIL)."""
    from PIL import Image

    arr = ((image[0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(arr)


def _frames_to_uint8(frames: torch.Tensor) -> np.ndarray:
    if not torch.is_tensor(frames):
        raise TypeError(f"`frames` must be a torch.Tensor, got {type(frames).__name__}")
    if frames.dim() == 5:
        if frames.shape[0] != 1:
            raise ValueError(f"`frames` with a batch dimension must have batch size 1, got shape {tuple(frames.shape)}")
        frames = frames[0]
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f"`frames` must have shape (F, 3, H, W) or (1, F, 3, H, W), got {tuple(frames.shape)}")
    arr = frames.detach().to(torch.float32).clamp(0, 1).mul(255).round().to(torch.uint8)
    return arr.permute(0, 2, 3, 1).cpu().numpy()  # (F, H, W, 3)


def export_video(frames: torch.Tensor, path: str | os.PathLike, fps: int = 16) -> str:
    """Write frames (F, 3, H, W) or (1, F, 3, H, W), float in [0, 1], to ``path`` (``.mp4`` or ``.gif``).

    MP4 uses imageio's ffmpeg writer (H.264, yuv420p; sides are padded to a multiple of 16 by imageio's
    ``macro_block_size``); GIF uses Pillow. The file is written under a temporary name and moved into place.
    Returns the path.
    """
    import imageio.v2 as imageio

    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".mp4", ".gif"):
        raise ValueError(f"`path` must end in .mp4 or .gif, got {path!r}")
    check_int("fps", fps)
    arr = _frames_to_uint8(frames)
    with atomic_path(path) as tmp:
        if ext == ".mp4":
            with imageio.get_writer(tmp, format="FFMPEG", fps=fps, codec="libx264", quality=8) as writer:
                for frame in arr:
                    writer.append_data(frame)
        else:
            # loop=0: repeat forever; duration is per frame in milliseconds for Pillow's GIF writer.
            imageio.mimsave(tmp, list(arr), format="GIF", duration=1000.0 / fps, loop=0)
    return path
