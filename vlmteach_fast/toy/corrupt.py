"""Corrupted versions of ground-truth videos: the ways a video model breaks a task.

Each corruption breaks one rule-scorer part (``BREAKS``); tests check the scorer notices, and the teacher's training
uses them as hard negatives so a "yes" cannot be earned by e.g. teleporting the ball onto the target.
"""

from __future__ import annotations

import random

import torch

from .tasks import ToyInstance
from .world import GRID, NUM_FRAMES, _paint, render_video

__all__ = ["CORRUPTIONS", "BREAKS", "corrupt", "applicable_corruptions"]

# Which scorer part each corruption breaks.
BREAKS = {
    "freeze": "goal",  # nothing moves
    "wrong_goal": "goal",  # a valid walk that ends elsewhere
    "teleport": "rules",  # stays at the start, then jumps onto the goal in the last frame
    "wall_cross": "rules",  # maze: the straight L-shaped route through walls
    "telekinesis": "rules",  # push: the block slides onto the mark without the ball
    "vanish": "integrity",  # the ball disappears in some frames
    "duplicate": "integrity",  # a second ball appears
    "background": "background",  # a wall-coloured patch appears on the floor
}
CORRUPTIONS = tuple(BREAKS)


def applicable_corruptions(instance: ToyInstance) -> tuple[str, ...]:
    """Corruptions that are defined (and do change the video) for this instance."""
    out = ["freeze", "wrong_goal", "vanish", "duplicate", "background"]
    if len(set(instance.agent_path)) > 2 and instance.task_type != "push":
        out.append("teleport")
    if instance.task_type == "maze" and _l_path_crosses(instance):
        out.append("wall_cross")
    if instance.task_type == "push":
        out.append("telekinesis")
    return tuple(c for c in CORRUPTIONS if c in out)


def _l_path(a, b):
    path = [a]
    r, c = a
    while c != b[1]:
        c += 1 if b[1] > c else -1
        path.append((r, c))
    while r != b[0]:
        r += 1 if b[0] > r else -1
        path.append((r, c))
    return path


def _l_path_crosses(inst: ToyInstance) -> bool:
    path = _l_path(inst.agent_start, inst.target)
    return len(path) <= NUM_FRAMES and any(bool(inst.walls[p]) for p in path)


def _fit(path):
    path = path[:NUM_FRAMES]
    return path + [path[-1]] * (NUM_FRAMES - len(path))


def _render(inst, agents, blocks=None):
    blocks = blocks if blocks is not None else inst.block_path
    return render_video(inst.walls, agents, target=inst.target, blocks=blocks, mark=inst.mark)


def corrupt(instance: ToyInstance, kind: str, seed: int = 0) -> torch.Tensor:
    """The ground-truth video of ``instance`` broken in way ``kind``: (9, 3, 32, 32) float32 in [0, 1].

    Args:
        instance: the task instance.
        kind: one of ``applicable_corruptions(instance)``.
        seed: picks the frames / cells the corruption touches.
    """
    if kind not in applicable_corruptions(instance):
        raise ValueError(f"`kind` must be one of {applicable_corruptions(instance)} for this {instance.task_type} "
                         f"instance, got {kind!r}")
    rng = random.Random(f"corrupt:{kind}:{instance.seed}:{seed}")
    path = list(instance.agent_path)
    video = instance.solution.clone()
    if kind == "freeze":
        return instance.first_frame.unsqueeze(0).repeat(NUM_FRAMES, 1, 1, 1)
    if kind == "wrong_goal":
        from .scorers import score_video
        from .tasks import physics_video

        # A physics walk that does not end on the goal (re-drawn until it does not; 20 tries suffice in practice).
        for s in range(20):
            v = physics_video(instance, seed=seed * 1000 + s)
            if score_video(instance, v).parts["goal"] == 0.0:
                return v
        return instance.first_frame.unsqueeze(0).repeat(NUM_FRAMES, 1, 1, 1)
    if kind == "teleport":
        return _render(instance, [path[0]] * (NUM_FRAMES - 1) + [path[-1]])
    if kind == "wall_cross":
        return _render(instance, _fit(_l_path(instance.agent_start, instance.target)))
    if kind == "telekinesis":
        blocks = _fit(_l_path(instance.block_start, instance.mark))
        return _render(instance, [path[0]] * NUM_FRAMES, blocks)
    if kind == "vanish":
        without = render_video(instance.walls, [None] * NUM_FRAMES, target=instance.target,
                               blocks=instance.block_path, mark=instance.mark)
        for t in rng.sample(range(1, NUM_FRAMES), k=rng.randint(1, 3)):
            video[t] = without[t]
        return video
    if kind == "duplicate":
        occupied = set(path) | set(instance.block_path or []) | {instance.target, instance.mark}
        free = [(r, c) for r in range(GRID) for c in range(GRID)
                if not instance.walls[r, c] and (r, c) not in occupied
                and all(abs(r - p[0]) + abs(c - p[1]) > 1 for p in path)]
        cell = rng.choice(free)
        for t in range(rng.randrange(1, NUM_FRAMES), NUM_FRAMES):
            _paint(video[t], cell, "agent", round_corners=True)
        return video
    if kind == "background":
        occupied = set(path) | set(instance.block_path or []) | {instance.target, instance.mark}
        free = [(r, c) for r in range(GRID) for c in range(GRID)
                if not instance.walls[r, c] and (r, c) not in occupied]
        cell = rng.choice(free)
        for t in range(1, NUM_FRAMES):
            _paint(video[t], cell, "wall")
        return video
    raise AssertionError(f"unhandled corruption {kind}")  # unreachable: checked above

