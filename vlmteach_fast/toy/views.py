"""The toy teacher's input views: what the teacher is shown of a video, differentiably.

A teacher scored on raw pixels can be fooled by patterns inside a 4-px world cell that no rule scorer reads (the
loop found such patterns: the teacher's P(yes) rose while the rule score did not, docs/method.md). The rule scorers
read one colour per cell and object, so the teacher can be shown just that:
- ``"frames"``: the frames as they are;
- ``"cells"``: each 4x4 cell replaced by its mean colour (no pattern can hide inside a cell);
- ``"palette"``: the cell means softly snapped to the world's palette (softmax over negative squared distances,
  temperature ``PALETTE_TEMPERATURE``), so a cell reads as one palette colour unless it is halfway between two.
All views map (B, F, 3, H, W) in [0, 1] to the same shape and are differentiable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .world import CELL, PALETTE

__all__ = ["VIEWS", "CellView", "make_view", "PALETTE_TEMPERATURE"]

VIEWS = ("frames", "cells", "palette")
# Palette colours are >= 0.6 apart (squared distance >= 0.36); at 0.03 a cell 0.1 from one colour and 0.5 from the
# next is 1 - 1e-5 that colour, and a cell halfway between two is 50/50, where the gradient is largest.
PALETTE_TEMPERATURE = 0.03
_PALETTE = torch.tensor(list(PALETTE.values()))  # (K, 3)


class CellView(torch.nn.Module):
    """(B, F, 3, H, W) in [0, 1] -> the same shape, one colour per ``cell`` x ``cell`` block (optionally snapped)."""

    def __init__(self, snap: bool = False, cell: int = CELL, temperature: float = PALETTE_TEMPERATURE):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"`temperature` must be > 0, got {temperature!r}")
        self.snap, self.cell, self.temperature = snap, cell, temperature

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        B, Fr, C, H, W = frames.shape
        if H % self.cell or W % self.cell:
            raise ValueError(f"frames must be multiples of the {self.cell}-px cell, got {H}x{W}")
        x = F.avg_pool2d(frames.reshape(B * Fr, C, H, W), self.cell)  # (B*F, 3, H/c, W/c)
        if self.snap:
            pal = _PALETTE.to(x)
            d2 = (x.permute(0, 2, 3, 1).unsqueeze(-2) - pal).square().sum(-1)  # (B*F, h, w, K)
            x = (torch.softmax(-d2 / self.temperature, dim=-1) @ pal).permute(0, 3, 1, 2)
        x = F.interpolate(x, scale_factor=self.cell, mode="nearest")
        return x.reshape(B, Fr, C, H, W)


def make_view(view: str):
    """The callable for a view name (None for ``"frames"``)."""
    if view not in VIEWS:
        raise ValueError(f"`view` must be one of {VIEWS}, got {view!r}")
    return None if view == "frames" else CellView(snap=view == "palette")
