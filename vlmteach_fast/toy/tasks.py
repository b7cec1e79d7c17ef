"""Seeded task generators of the toy world: *reach*, *maze* and *push* (image-to-video, 32x32 px, 9 frames).

Every instance carries its prompt, first frame, a ground-truth solution video (the agent moves one cell per frame
along a shortest valid path, then stays) and the cells the rule scorers need. ``physics_video`` makes the training
videos of the toy video model: the same first frames, but the agent walks in random valid directions (walls block
it, a pushed block moves ahead of it) with no regard for the goal, so a model trained on them knows the physics only.

Seeds: instance ``i`` of ``make_instances(n, seed, split)`` has seed ``SPLIT_OFFSET[split] + seed * MAX_PER_CALL + i``;
the "train" range [0, 2**30) and the "test" range [2**30, ...) never overlap (``n <= MAX_PER_CALL`` is enforced).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import torch

from ..checks import check_int
from .world import GRID, MOVES, NUM_FRAMES, in_grid, render_video

__all__ = ["TASK_TYPES", "DIFFICULTIES", "ToyInstance", "make_instance", "make_instances", "physics_video",
           "instance_seed", "PROMPTS"]

TASK_TYPES = ("reach", "maze", "push")
DIFFICULTIES = ("easy", "medium", "hard")
PROMPTS = {
    "reach": "Move the red ball onto the green square.",
    "maze": "Move the red ball through the maze to the green square without crossing the gray walls.",
    "push": "Push the blue block onto the yellow mark with the red ball.",
}
# Solution lengths (moves) per difficulty for reach and maze; at most NUM_FRAMES - 1 = 8 moves fit in a video.
_PATH_LENGTHS = {"easy": (1, 3), "medium": (4, 6), "hard": (7, 8)}
# push: how far the ball starts off the push line (cells it must walk before pushing).
_PUSH_OFFSET = {"easy": 0, "medium": 1, "hard": 2}
SPLIT_OFFSET = {"train": 0, "test": 2 ** 30}
MAX_PER_CALL = 100_000

Cell = tuple[int, int]


@dataclass
class ToyInstance:
    """One task instance.

    Attributes:
        task_type: one of ``TASK_TYPES``.
        seed: the generator seed (same seed, same instance).
        difficulty: one of ``DIFFICULTIES``.
        prompt: the task prompt (text).
        first_frame: (3, 32, 32) float32 in [0, 1].
        solution: (9, 3, 32, 32) float32 in [0, 1], ground-truth video; ``solution[0] == first_frame``.
        walls: (8, 8) bool wall cells (all False except in maze).
        agent_path: agent cell per frame of the solution (9 cells, the first is the start).
        target: the agent's goal cell (reach, maze) or None (push).
        block_path: block cell per frame of the solution (push) or None.
        mark: the block's goal cell (push) or None.
    """

    task_type: str
    seed: int
    difficulty: str
    prompt: str
    first_frame: torch.Tensor
    solution: torch.Tensor
    walls: torch.Tensor
    agent_path: list[Cell]
    target: Cell | None = None
    block_path: list[Cell] | None = None
    mark: Cell | None = None
    extra: dict = field(default_factory=dict)

    @property
    def agent_start(self) -> Cell:
        return self.agent_path[0]

    @property
    def block_start(self) -> Cell | None:
        return None if self.block_path is None else self.block_path[0]


def _pad(path: list[Cell]) -> list[Cell]:
    """Hold the last cell until the video has NUM_FRAMES frames."""
    if len(path) > NUM_FRAMES:
        raise ValueError(f"path of {len(path)} cells does not fit in {NUM_FRAMES} frames")
    return path + [path[-1]] * (NUM_FRAMES - len(path))


def _bfs(walls: torch.Tensor, start: Cell) -> dict[Cell, Cell | None]:
    """Parent map of a breadth-first search over free cells (4-neighbourhood)."""
    parent: dict[Cell, Cell | None] = {start: None}
    queue = deque([start])
    while queue:
        cur = queue.popleft()
        for dr, dc in MOVES:
            nxt = (cur[0] + dr, cur[1] + dc)
            if in_grid(nxt) and not walls[nxt] and nxt not in parent:
                parent[nxt] = cur
                queue.append(nxt)
    return parent


def _path_to(parent: dict[Cell, Cell | None], goal: Cell) -> list[Cell]:
    path = [goal]
    while parent[path[-1]] is not None:
        path.append(parent[path[-1]])
    return path[::-1]


def _free_cells(walls: torch.Tensor) -> list[Cell]:
    return [tuple(x) for x in (~walls).nonzero().tolist()]


def _maze_walls(rng: random.Random) -> torch.Tensor:
    """8x8 wall grid: a depth-first maze over 4x4 rooms at even cells, plus 2 extra openings (loops)."""
    walls = torch.ones(GRID, GRID, dtype=torch.bool)
    rooms = [(r, c) for r in range(0, GRID, 2) for c in range(0, GRID, 2)]
    start = rng.choice(rooms)
    walls[start] = False
    stack, seen = [start], {start}
    while stack:
        r, c = stack[-1]
        nbrs = [(r + 2 * dr, c + 2 * dc) for dr, dc in MOVES if (r + 2 * dr, c + 2 * dc) in rooms]
        nbrs = [n for n in nbrs if n not in seen]
        if not nbrs:
            stack.pop()
            continue
        n = rng.choice(nbrs)
        walls[(r + n[0]) // 2, (c + n[1]) // 2] = False
        walls[n] = False
        seen.add(n)
        stack.append(n)
    # Open two random interior walls between rooms so some instances have more than one route.
    between = [(r, c) for r in range(GRID - 1) for c in range(GRID - 1) if walls[r, c] and (r % 2) != (c % 2)]
    for cell in rng.sample(between, k=min(2, len(between))):
        walls[cell] = False
    return walls


def _pick_difficulty(rng: random.Random, difficulty: str | None) -> str:
    if difficulty is None:
        return rng.choice(DIFFICULTIES)
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"`difficulty` must be one of {DIFFICULTIES} or None, got {difficulty!r}")
    return difficulty


def _reach(rng: random.Random, difficulty: str, walls: torch.Tensor):
    lo, hi = _PATH_LENGTHS[difficulty]
    free = _free_cells(walls)
    while True:
        start = rng.choice(free)
        parent = _bfs(walls, start)
        goals = [g for g in parent if lo <= len(_path_to(parent, g)) - 1 <= hi]
        if goals:
            goal = rng.choice(goals)
            return start, goal, _path_to(parent, goal)


def _push(rng: random.Random, difficulty: str):
    offset = _PUSH_OFFSET[difficulty]
    while True:
        d = rng.choice(MOVES)
        perp = rng.choice([m for m in MOVES if m[0] * d[0] + m[1] * d[1] == 0])
        pushes = rng.randint(1, NUM_FRAMES - 1 - offset)
        # The ball starts `offset` cells off the push line, walks onto it, then pushes the block `pushes` cells.
        behind = (rng.randrange(GRID), rng.randrange(GRID))
        block = (behind[0] + d[0], behind[1] + d[1])
        mark = (block[0] + pushes * d[0], block[1] + pushes * d[1])
        start = (behind[0] + offset * perp[0], behind[1] + offset * perp[1])
        if not all(in_grid(x) for x in (block, mark, start)):
            continue
        agent = [start] + [(start[0] - k * perp[0], start[1] - k * perp[1]) for k in range(1, offset + 1)]
        agent += [(behind[0] + k * d[0], behind[1] + k * d[1]) for k in range(1, pushes + 1)]
        blocks = [block] * (offset + 1) + [(block[0] + k * d[0], block[1] + k * d[1]) for k in range(1, pushes + 1)]
        return agent, blocks, mark


def instance_seed(index: int, seed: int = 0, split: str = "test") -> int:
    """Seed of instance ``index`` of ``make_instances(..., seed, split)``; train and test ranges are disjoint."""
    if split not in SPLIT_OFFSET:
        raise ValueError(f"`split` must be one of {tuple(SPLIT_OFFSET)}, got {split!r}")
    if not 0 <= index < MAX_PER_CALL:
        raise ValueError(f"`index` must be in [0, {MAX_PER_CALL}), got {index}")
    check_int("seed", seed, 0, 2 ** 30 // MAX_PER_CALL - 1)
    return SPLIT_OFFSET[split] + seed * MAX_PER_CALL + index


def make_instance(task_type: str, seed: int, difficulty: str | None = None) -> ToyInstance:
    """Generate one instance deterministically from ``(task_type, seed, difficulty)``.

    Args:
        task_type: one of ``TASK_TYPES``.
        seed: int >= 0.
        difficulty: one of ``DIFFICULTIES``; None draws it from the seed.
    """
    if task_type not in TASK_TYPES:
        raise ValueError(f"`task_type` must be one of {TASK_TYPES}, got {task_type!r}")
    check_int("seed", seed, minimum=0)
    rng = random.Random(f"{task_type}:{seed}")
    difficulty = _pick_difficulty(rng, difficulty)
    walls = torch.zeros(GRID, GRID, dtype=torch.bool)
    target = mark = blocks = None
    if task_type == "push":
        path, blocks, mark = _push(rng, difficulty)
        blocks = _pad(blocks)
    else:
        if task_type == "maze":
            walls = _maze_walls(rng)
        _, target, path = _reach(rng, difficulty, walls)
    path = _pad(path)
    video = render_video(walls, path, target=target, blocks=blocks, mark=mark)
    return ToyInstance(task_type=task_type, seed=seed, difficulty=difficulty, prompt=PROMPTS[task_type],
                       first_frame=video[0].clone(), solution=video, walls=walls, agent_path=path, target=target,
                       block_path=blocks, mark=mark)


def make_instances(n: int, seed: int = 0, task_types=TASK_TYPES, split: str = "test",
                   difficulty: str | None = None) -> list[ToyInstance]:
    """``n`` instances cycling through ``task_types``; held-out by default (``split="test"``).

    Args:
        n: number of instances, 1 <= n <= MAX_PER_CALL.
        seed: selects a disjoint block of instance seeds (see the module docstring).
        task_types: a task type name or a sequence of them.
        split: ``"test"`` (held out from training) or ``"train"`` (what the training scripts use).
        difficulty: fixed difficulty or None (drawn per instance).
    """
    check_int("n", n, 1, MAX_PER_CALL)
    if isinstance(task_types, str):
        task_types = (task_types,)
    task_types = tuple(task_types)
    if not task_types or any(t not in TASK_TYPES for t in task_types):
        raise ValueError(f"`task_types` must be a non-empty subset of {TASK_TYPES}, got {task_types!r}")
    return [make_instance(task_types[i % len(task_types)], instance_seed(i, seed, split), difficulty)
            for i in range(n)]


def physics_video(instance: ToyInstance, seed: int, persistence: float = 0.7, stay: float = 0.1,
                  prefix: int = 0) -> torch.Tensor:
    """A video that obeys the world's physics but ignores the goal: (9, 3, 32, 32) float32 in [0, 1].

    From ``instance``'s first frame the agent takes a random walk: each frame it stays with probability ``stay``,
    otherwise keeps its last direction with probability ``persistence`` or picks a random one. Moves into walls or
    off the grid are replaced by another valid direction; a move into the block pushes it when the cell beyond is
    free (else the move is invalid). ``prefix`` (0-8) frames after the first follow the solution instead, and the
    walk starts from where the solution left the agent (a near-solution: the right start, then wandering; 8 is the
    solution itself).
    """
    check_int("prefix", prefix, 0, NUM_FRAMES - 1)
    rng = random.Random(f"physics:{instance.task_type}:{instance.seed}:{seed}")
    walls = instance.walls
    agents = list(instance.agent_path[:prefix + 1])
    blocks = [None] * (prefix + 1) if instance.block_path is None else list(instance.block_path[:prefix + 1])
    agent, block = agents[-1], blocks[-1]
    direction = rng.choice(MOVES)
    if prefix:
        last = (agents[-1][0] - agents[-2][0], agents[-1][1] - agents[-2][1])
        direction = last if last in MOVES else direction

    def valid(cell, blk, m):
        nxt = (cell[0] + m[0], cell[1] + m[1])
        if not in_grid(nxt) or walls[nxt]:
            return False
        if blk is not None and nxt == blk:
            beyond = (blk[0] + m[0], blk[1] + m[1])
            return in_grid(beyond) and not walls[beyond]
        return True

    for _ in range(NUM_FRAMES - 1 - prefix):
        if rng.random() >= stay:
            if rng.random() >= persistence or not valid(agent, block, direction):
                options = [m for m in MOVES if valid(agent, block, m)]
                direction = rng.choice(options) if options else direction
            if valid(agent, block, direction):
                agent = (agent[0] + direction[0], agent[1] + direction[1])
                if block is not None and agent == block:
                    block = (block[0] + direction[0], block[1] + direction[1])
        agents.append(agent)
        blocks.append(block)
    return render_video(walls, agents, target=instance.target, blocks=None if block is None else blocks,
                        mark=instance.mark)
