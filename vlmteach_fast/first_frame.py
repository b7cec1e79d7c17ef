"""Bringing a first frame to the video model's geometry.

Benchmarks ship first frames of their own sizes (VBVR-Bench's are square, RULER-Bench's vary), while a video model
needs sides that are multiples of its VAE compression x patch size, and some checkpoints one resolution only.

Which (height, width) -- ``resolve_size``:
1. ``SamplingConfig.height`` and ``width`` when both are set;
2. else the checkpoint's only resolution, for families that have one (CogVideoX-5b-I2V: 480 x 720);
3. else from the image: its aspect ratio at its own area, or at ``SamplingConfig.max_area`` pixels when that is
   smaller, each side rounded down to its multiple (one side given: the other from the aspect ratio);
4. else (no image) the pipeline's default size.

How the image gets there -- ``fit_image``, chosen by ``SamplingConfig.fit``:
- ``"crop"`` (default): scale to cover the target keeping the aspect ratio, then cut the overflow evenly from both
  sides (the resize-and-center-crop of the usual image-to-video generation scripts). Nothing is distorted; an edge
  strip can be lost when the aspect ratios differ.
- ``"pad"``: scale to fit inside the target keeping the aspect ratio, then pad evenly with black. Nothing is lost.
  VBVR-EvalKit's scorers find black / gray / white borders and crop them off before comparing with the ground truth,
  so for VBVR with a model whose aspect ratio differs from the frames', "pad" keeps the scored geometry.
A frame that already has the target size is returned as given (no resampling). What was done is returned as a
JSON-ready dict and recorded with each benchmark record.

Which pixel values -- ``image_to_rgb``: every PIL image becomes 8-bit RGB with its values scaled by its own range.
PIL's ``convert("RGB")`` clips instead: a 16-bit grey of 30000 becomes 255 (a 16-bit PNG turns into pure 0 / 255) and
a float (mode F) 0.5 becomes 0 (all black).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["FIT_MODES", "resolve_size", "fit_image", "image_to_rgb"]

FIT_MODES = ("crop", "pad")


def _floor_to(x: float, m: int) -> int:
    return max(m, int(x) // m * m)


def resolve_size(family, height: int | None, width: int | None, image_hw: tuple[int, int] | None,
                 max_area: int | None = None) -> tuple[int, int]:
    """The (height, width) to generate at (rules in the module docstring).

    Args:
        family: the reasoner's model family (``Reasoner.family``: ``size_multiple``, ``fixed_size``, ``default_size``).
        height, width: the configured sides, or None.
        image_hw: (H, W) of the first frame, or None (text-to-video).
        max_area: cap on height * width when the size comes from the image, or None.
    """
    if height is not None and width is not None:
        return height, width
    fixed = family.fixed_size()
    if fixed is not None and height is None and width is None:
        return fixed
    mh, mw = family.size_multiple()
    if image_hw is None:
        dh, dw = family.default_size
        return (height or dh), (width or dw)
    ih, iw = image_hw
    if height is not None:
        return height, _floor_to(height * iw / ih, mw)
    if width is not None:
        return _floor_to(width * ih / iw, mh), width
    scale = 1.0 if not max_area or ih * iw <= max_area else math.sqrt(max_area / (ih * iw))
    return _floor_to(ih * scale, mh), _floor_to(iw * scale, mw)


def fit_image(image: torch.Tensor, height: int, width: int, mode: str = "crop"):
    """Resize a first frame to (height, width) keeping its aspect ratio, by center crop or padding.

    Args:
        image: (3, H, W) float tensor in [0, 1].
        height, width: the target size in pixels.
        mode: ``"crop"`` or ``"pad"`` (see the module docstring).

    Returns:
        ``(frame, info)``: frame (3, height, width) float32 in [0, 1] (``image`` itself when it already has that
        size); info {"source": [H, W], "fit": "none" | mode, "scaled": [h, w] (size after scaling),
        "offset": [top, left] (crop: where the kept window starts in the scaled image; pad: where the scaled image
        sits in the frame)}.
    """
    if mode not in FIT_MODES:
        raise ValueError(f"`fit` must be one of {FIT_MODES}, got {mode!r}")
    if not torch.is_tensor(image) or image.dim() != 3 or image.shape[0] != 3:
        got = tuple(image.shape) if torch.is_tensor(image) else type(image).__name__
        raise ValueError(f"`image` must be a (3, H, W) tensor, got {got}")
    ih, iw = int(image.shape[1]), int(image.shape[2])
    info = {"source": [ih, iw], "fit": "none", "scaled": [ih, iw], "offset": [0, 0]}
    if (ih, iw) == (height, width):
        return image, info
    scale = (max if mode == "crop" else min)(height / ih, width / iw)
    # the side that decides the scale lands on the target; clamping keeps rounding from leaving the other side
    # short of the target (crop) or over it (pad)
    bound = max if mode == "crop" else min
    sh, sw = bound(height, round(ih * scale)), bound(width, round(iw * scale))
    x = image.detach().to(torch.float32)[None]
    if (sh, sw) != (ih, iw):
        # antialiased bicubic: PIL-like quality on downscaling, which plain bicubic interpolation aliases
        x = F.interpolate(x, size=(sh, sw), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    if mode == "crop":
        top, left = (sh - height) // 2, (sw - width) // 2
        out = x[0, :, top:top + height, left:left + width]
    else:
        top, left = (height - sh) // 2, (width - sw) // 2
        out = F.pad(x[0], (left, width - sw - left, top, height - sh - top), value=0.0)
    info.update(fit=mode, scaled=[sh, sw], offset=[top, left])
    return out.contiguous(), info


def image_to_rgb(image, name: str = "`image`"):
    """An 8-bit RGB PIL image from a PIL image of any mode, scaled by its range rather than clipped to 0..255.

    - "I;16*" (16-bit grey, e.g. a 16-bit PNG): value / 65535.
    - "I" (32-bit integers; older Pillows open 16-bit PNGs so): values in 0..255 are read as 8-bit (as PIL does),
      values up to 65535 as 16-bit; anything else is refused.
    - "F" (32-bit float): values in [0, 1] (clipped within 1e-3 of it); anything else is refused.
    - other modes (RGB, L, P, RGBA, CMYK, ...): PIL's own ``convert("RGB")``.
    ``ValueError`` names ``name`` (how the caller calls the image), the mode and the range of values seen, or says
    the image is empty (0 pixels wide or high).
    """
    import numpy as np
    from PIL import Image

    if image.width == 0 or image.height == 0:
        raise ValueError(f"{name} is empty ({image.width}x{image.height} pixels)")
    mode = image.mode
    if not (mode.startswith("I;16") or mode in ("I", "F")):
        return image.convert("RGB")  # a new image also for RGB: the caller may close the file it came from
    values = np.asarray(image, dtype=np.float64)
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ValueError(f"{name} is a mode {mode} image with non-finite values (NaN / inf)")
    if mode == "F":
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(f"{name} is a float (mode F) image with values in [{lo:g}, {hi:g}]; expected [0, 1] "
                             "(scale it, or pass a (3, H, W) tensor in [0, 1])")
        scale = 1.0
    elif mode == "I" and lo >= 0 and hi <= 255:
        return image.convert("RGB")
    elif lo < 0 or hi > 65535:
        raise ValueError(f"{name} is a mode {mode} integer image with values in [{lo:g}, {hi:g}]; expected "
                         "0..255 (8-bit) or 0..65535 (16-bit)")
    else:
        scale = 1.0 / 65535
    grey = np.clip(np.rint(values * scale * 255), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")
