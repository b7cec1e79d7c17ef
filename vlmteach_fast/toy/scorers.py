"""Rule scorers of the toy world, independent of any model: colour masks, blobs and cell positions.

Per instance and video, four parts in [0, 1] (VBVR-Bench style):
- ``goal``: in the final frame the agent (reach, maze) or the block (push) is on its goal cell; 0 or 1.
- ``rules``: fraction of frame transitions that obey the physics: the agent moves at most one cell, never covers a
  wall cell (maze), and the block moves at most one cell and only when the agent pushes it (push).
- ``integrity``: fraction of frames with exactly one agent blob of plausible size (and one block blob in push).
- ``background``: fraction of frames whose static scene (walls, target, mark, empty floor) is unchanged outside
  the moving objects.
``score`` is their weighted mean (``ScoreWeights``); ``passed`` needs every part at 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..checks import check_number
from .tasks import ToyInstance
from .world import CELL, GRID, PALETTE, SIZE, render_frame

__all__ = ["ScoreWeights", "RuleScore", "score_video", "score_videos", "colour_labels", "blobs", "PARTS"]

PARTS = ("goal", "rules", "integrity", "background")
_NAMES = tuple(PALETTE)
_COLOURS = torch.tensor([PALETTE[n] for n in _NAMES])  # (K, 3)
# Nearest palette colour counts only within this RGB distance: palette colours are >= 0.6 apart, so 0.3 is the
# midpoint; pixels farther from every palette colour (VAE blur between two colours) are "unknown".
MAX_COLOUR_DIST = 0.3
# Blob areas in pixels: a ball is 12 px, a block 16 px; smaller blobs (<= 3 px) are blur specks and are ignored.
MIN_BLOB, AGENT_AREA, BLOCK_AREA = 4, (8, 20), (11, 24)
# A wall cell counts as crossed when >= 4 of its 16 pixels show the agent's colour.
WALL_CROSS_PIXELS = 4
# Background: a pixel changed when its largest channel difference exceeds 0.3; a frame keeps its background when
# fewer than 8 such pixels (half a cell) lie outside the moving objects (dilated by one pixel for blur).
BG_PIXEL_DIFF, BG_MAX_CHANGED = 0.3, 8


@dataclass
class ScoreWeights:
    """Weights of the parts in ``RuleScore.score`` (normalized to sum 1)."""

    goal: float = field(default=0.4, metadata={"help": "final-frame goal"})
    rules: float = field(default=0.2, metadata={"help": "physics held in every transition"})
    integrity: float = field(default=0.2, metadata={"help": "one agent (and block) of plausible size"})
    background: float = field(default=0.2, metadata={"help": "static scene unchanged"})

    def __post_init__(self):
        for name in PARTS:
            check_number(f"ScoreWeights.{name}", getattr(self, name), minimum=0)
        if sum(getattr(self, n) for n in PARTS) <= 0:
            raise ValueError("ScoreWeights must not all be 0")


@dataclass
class RuleScore:
    """``score`` in [0, 1], ``parts`` {goal, rules, integrity, background} in [0, 1], ``passed`` all parts 1."""

    score: float
    parts: dict[str, float]
    passed: bool


def colour_labels(frames: torch.Tensor) -> torch.Tensor:
    """(F, 3, H, W) float in [0, 1] -> (F, H, W) int64 palette index (order of ``PALETTE``), -1 where no colour is
    within ``MAX_COLOUR_DIST``."""
    x = frames.detach().float().permute(0, 2, 3, 1)  # (F, H, W, 3)
    d2 = (x.unsqueeze(-2) - _COLOURS).square().sum(dim=-1)  # (F, H, W, K) squared distances
    dist2, idx = d2.min(dim=-1)
    return torch.where(dist2 <= MAX_COLOUR_DIST ** 2, idx, torch.full_like(idx, -1))


def blobs(mask: torch.Tensor) -> list[list[tuple[int, tuple[float, float]]]]:
    """Per frame, the 4-connected blobs of a (F, H, W) bool mask with area >= MIN_BLOB:
    ``[(area, (row_px, col_px) centroid), ...]``. A Python flood fill over the mask's pixels: objects are at most
    a few cells, so masks hold tens of pixels and this is faster than tensor label propagation (~40 iterations)."""
    out = []
    for fr in mask:
        pixels = set(map(tuple, fr.nonzero().tolist()))
        found = []
        while pixels:
            stack = [pixels.pop()]
            comp = []
            while stack:
                y, x = stack.pop()
                comp.append((y, x))
                for nb in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
                    if nb in pixels:
                        pixels.remove(nb)
                        stack.append(nb)
            if len(comp) >= MIN_BLOB:
                cy = sum(p[0] for p in comp) / len(comp)
                cx = sum(p[1] for p in comp) / len(comp)
                found.append((len(comp), (cy, cx)))
        out.append(found)
    return out


def _cell(centroid: tuple[float, float]) -> tuple[int, int]:
    return (min(GRID - 1, max(0, int(centroid[0] // CELL))), min(GRID - 1, max(0, int(centroid[1] // CELL))))


def _single(frame_blobs, area) -> tuple[int, int] | None:
    """The cell of the only plausible blob of a frame, or None when there is not exactly one."""
    if len(frame_blobs) != 1 or not area[0] <= frame_blobs[0][0] <= area[1]:
        return None
    return _cell(frame_blobs[0][1])


def _adjacent_or_same(a, b) -> bool:
    return abs(a[0] - b[0]) + abs(a[1] - b[1]) <= 1


def _check_video(video, name: str = "video") -> torch.Tensor:
    if not isinstance(video, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor (F, 3, {SIZE}, {SIZE}), got {type(video).__name__}")
    if video.dim() != 4 or tuple(video.shape[1:]) != (3, SIZE, SIZE) or video.shape[0] < 2:
        raise ValueError(f"`{name}` must have shape (F >= 2, 3, {SIZE}, {SIZE}), got {tuple(video.shape)}")
    if not video.is_floating_point():
        raise TypeError(f"`{name}` must be floating point in [0, 1], got {video.dtype}")
    return video


def score_video(instance: ToyInstance, video: torch.Tensor, weights: ScoreWeights | None = None) -> RuleScore:
    """Rule score of one video for one instance.

    Args:
        instance: the task instance (its walls, target / mark and task type).
        video: (F, 3, 32, 32) float in [0, 1]; F is normally 9.
        weights: part weights; default ``ScoreWeights()``.
    """
    if not isinstance(instance, ToyInstance):
        raise TypeError(f"`instance` must be a ToyInstance, got {type(instance).__name__}")
    video = _check_video(video).detach().float().cpu()
    weights = weights or ScoreWeights()
    labels = colour_labels(video)  # (F, H, W)
    agent_mask = labels == _NAMES.index("agent")
    block_mask = labels == _NAMES.index("block")
    agent_blobs = blobs(agent_mask)
    agents = [_single(b, AGENT_AREA) for b in agent_blobs]
    pushing = instance.task_type == "push"
    blocks = [_single(b, BLOCK_AREA) for b in blobs(block_mask)] if pushing else [None] * len(agents)
    n = len(agents)

    ok_frames = [a is not None and (not pushing or b is not None) for a, b in zip(agents, blocks)]
    integrity = sum(ok_frames) / n

    # Wall crossing: agent-coloured pixels per wall cell (counts over the 4x4 cell), per frame.
    per_cell = agent_mask.float().view(n, GRID, CELL, GRID, CELL).sum(dim=(2, 4))  # (F, GRID, GRID)
    crossed = ((per_cell >= WALL_CROSS_PIXELS) & instance.walls).flatten(1).any(dim=1)  # (F,)
    good = 0
    for t in range(1, n):
        a0, a1, b0, b1 = agents[t - 1], agents[t], blocks[t - 1], blocks[t]
        ok = ok_frames[t - 1] and ok_frames[t] and not bool(crossed[t]) and _adjacent_or_same(a0, a1)
        if ok and pushing:
            # The block moves at most one cell, only into the cell beyond the agent's move, and the agent
            # never stands on it.
            moved = b0 != b1
            ok = _adjacent_or_same(b0, b1) and a1 != b1 and (
                not moved or (a1 == b0 and (b1[0] - b0[0], b1[1] - b0[1]) == (a1[0] - a0[0], a1[1] - a0[1])))
        good += ok
    rules = good / (n - 1)

    if pushing:
        goal = float(blocks[-1] is not None and blocks[-1] == instance.mark)
    else:
        goal = float(agents[-1] is not None and agents[-1] == instance.target)

    static = render_frame(instance.walls, None, instance.target, None, instance.mark)
    moving = (agent_mask | block_mask).float().unsqueeze(1)
    moving = F.max_pool2d(moving, 3, stride=1, padding=1).squeeze(1).bool()  # one-pixel dilation for blur
    changed = ((video - static).abs().amax(dim=1) > BG_PIXEL_DIFF) & ~moving  # (F, H, W)
    background = (changed.flatten(1).sum(dim=1) < BG_MAX_CHANGED).float().mean().item()

    parts = {"goal": goal, "rules": rules, "integrity": integrity, "background": background}
    total = sum(getattr(weights, p) for p in PARTS)
    score = sum(getattr(weights, p) * parts[p] for p in PARTS) / total
    return RuleScore(score=float(score), parts=parts, passed=all(v == 1.0 for v in parts.values()))


def score_videos(instances, videos, weights: ScoreWeights | None = None) -> list[RuleScore]:
    """``score_video`` over aligned lists; ``videos`` may be a (B, F, 3, 32, 32) tensor."""
    if len(instances) != len(videos):
        raise ValueError(f"`instances` ({len(instances)}) and `videos` ({len(videos)}) must have equal length")
    return [score_video(i, v, weights) for i, v in zip(instances, videos)]

