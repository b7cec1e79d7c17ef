"""Geometry, palette and rendering of the toy world: an 8x8 grid of 4-px cells (32x32 px), 9 frames.

9 frames = 1 + 2 * 4 fits the Wan VAE's 4x temporal compression (3 latent frames); 4-px cells fit its 4x spatial
compression in the shipped model (one latent pixel per cell). Every object occupies exactly one cell, so the rule
scorers can read positions off colour masks without any model.
"""

from __future__ import annotations

import torch

__all__ = ["GRID", "CELL", "SIZE", "NUM_FRAMES", "PALETTE", "MOVES", "render_frame", "render_video", "in_grid"]

GRID = 8  # cells per side
CELL = 4  # pixels per cell side
SIZE = GRID * CELL  # 32 px
NUM_FRAMES = 9  # 1 + 4k with k = 2: the first frame plus 8 moves of one cell each

# RGB in [0, 1]. Chosen pairwise >= 0.6 apart (L2) so a nearest-colour mask survives VAE blur.
PALETTE: dict[str, tuple[float, float, float]] = {
    "background": (0.0, 0.0, 0.0),
    "wall": (0.55, 0.55, 0.55),
    "agent": (0.95, 0.1, 0.1),
    "target": (0.1, 0.85, 0.1),
    "block": (0.15, 0.3, 0.95),
    "mark": (0.95, 0.85, 0.1),
}
MOVES = ((0, 1), (0, -1), (1, 0), (-1, 0))  # (drow, dcol): right, left, down, up

Cell = tuple[int, int]


def in_grid(cell: Cell) -> bool:
    return 0 <= cell[0] < GRID and 0 <= cell[1] < GRID


def _paint(img: torch.Tensor, cell: Cell, colour: str, round_corners: bool = False) -> None:
    r, c = cell
    y, x = r * CELL, c * CELL
    rgb = torch.tensor(PALETTE[colour]).view(3, 1, 1)
    img[:, y:y + CELL, x:x + CELL] = rgb
    if round_corners:
        # A "ball": the 4x4 cell without its 4 corner pixels (12 px), distinguishable from a square block (16 px).
        bg = torch.tensor(PALETTE["background"])
        for dy, dx in ((0, 0), (0, CELL - 1), (CELL - 1, 0), (CELL - 1, CELL - 1)):
            img[:, y + dy, x + dx] = bg


def render_frame(walls: torch.Tensor, agent: Cell | None, target: Cell | None = None, block: Cell | None = None,
                 mark: Cell | None = None) -> torch.Tensor:
    """One frame (3, SIZE, SIZE) float32 in [0, 1].

    Args:
        walls: (GRID, GRID) bool, True where a wall cell is.
        agent, target, block, mark: (row, col) cells or None. Draw order (later on top): walls, target, mark,
            block, agent; the agent covers the target when it stands on it.
    """
    img = torch.zeros(3, SIZE, SIZE)
    img[:] = torch.tensor(PALETTE["background"]).view(3, 1, 1)
    for r, c in walls.nonzero().tolist():
        _paint(img, (r, c), "wall")
    if target is not None:
        _paint(img, target, "target")
    if mark is not None:
        _paint(img, mark, "mark")
    if block is not None:
        _paint(img, block, "block")
    if agent is not None:
        _paint(img, agent, "agent", round_corners=True)
    return img


def render_video(walls: torch.Tensor, agents: list[Cell], target: Cell | None = None,
                 blocks: list[Cell] | None = None, mark: Cell | None = None) -> torch.Tensor:
    """(F, 3, SIZE, SIZE) float32 with F = len(agents); ``blocks`` (if given) has one cell per frame."""
    if blocks is not None and len(blocks) != len(agents):
        raise ValueError(f"`blocks` must have one cell per frame ({len(agents)}), got {len(blocks)}")
    return torch.stack([
        render_frame(walls, a, target, None if blocks is None else blocks[i], mark) for i, a in enumerate(agents)
    ])
