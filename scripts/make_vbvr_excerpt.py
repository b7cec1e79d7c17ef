"""Draw small VBVR-style benchmark excerpts whose ground truth the official rule evaluators can see (seeded).

Two tasks whose VBVR-EvalKit evaluators are rule checks on colour masks:

- ``G-3_stable_sort_data-generator``: six flat shapes (three squares of one colour, three circles of another) on
  white. The first frame mixes the colours and puts each group's sizes large to small at three heights; the answer
  groups them by colour, small to large, on one line. The evaluator skips contours under 500 px^2, so the smallest
  shape here is 24 x 24 px (529 px^2 as OpenCV measures a filled square), which needs a 256 px wide frame for six.
- ``O-39_maze_data-generator``: a 5 x 5 grid maze (black walls, seeded depth-first carving) with a green start disc
  and a red end square; the answer draws an orange path (HSV hue 10-30, the evaluator's mask) along the solution.

The answer video moves / draws linearly from the first frame to the final one (9 frames at 4 fps). ``--pro``
writes the VBVR-Pro-Bench video layout instead: the same samples plus ``metadata.json`` (the task's parameters and
symbolic answer, which Pro-Bench's evaluators read).

    python scripts/make_vbvr_excerpt.py --out tests/data/vbvr_visible --samples 2 --seed 0
    python scripts/make_vbvr_excerpt.py --out tests/data/vbvr_pro --samples 1 --seed 1 --pro
"""

from __future__ import annotations

import argparse
import json
import os
import random

import numpy as np
import torch
from PIL import Image, ImageDraw

from vlmteach_fast.checks import check_int
from vlmteach_fast.reasoner.video_io import export_video

SIZE = 256  # px; six shapes of >= 24 px side in one row need it (see the module docstring)
FRAMES = 9
FPS = 4
SORT_TASK, MAZE_TASK = "G-3_stable_sort_data-generator", "O-39_maze_data-generator"
SPLITS = {SORT_TASK: "In-Domain_50", MAZE_TASK: "Out-of-Domain_50"}
PROMPTS = {SORT_TASK: "Sort the shapes: group them by colour, and within each group order them from smallest to "
                      "largest, left to right, on one horizontal line.",
           MAZE_TASK: "Draw the path from the green start through the maze to the red end, without crossing walls."}
# saturated colours far apart in RGB (the evaluator groups colours closer than 50 RGB units)
COLOURS = [(220, 40, 40), (40, 90, 220), (30, 160, 60), (150, 50, 200)]
WALL, START, END, PATH = (0, 0, 0), (0, 190, 0), (225, 0, 0), (255, 140, 0)


# -- G-3 stable sort ----------------------------------------------------------------------------------------------

def _draw_shapes(shapes, positions) -> np.ndarray:
    """(SIZE, SIZE, 3) uint8 frame: each shape {"kind", "size", "colour"} centred at its (x, y)."""
    img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    d = ImageDraw.Draw(img)
    for s, (x, y) in zip(shapes, positions):
        h = s["size"] / 2
        box = [round(x - h), round(y - h), round(x - h) + s["size"] - 1, round(y - h) + s["size"] - 1]
        (d.rectangle if s["kind"] == "square" else d.ellipse)(box, fill=tuple(s["colour"]))
    return np.asarray(img)


def stable_sort_sample(rng: random.Random) -> tuple[list[np.ndarray], dict]:
    """(frames, metadata): FRAMES (SIZE, SIZE, 3) uint8 frames from the mixed row to the sorted one."""
    a, b = rng.sample(COLOURS, 2)
    shapes = [{"kind": "square", "size": s, "colour": a} for s in (24, 30, 36)] + \
             [{"kind": "circle", "size": s, "colour": b} for s in (28, 34, 40)]
    # first frame, left to right: colours alternate and each group runs large to small (the evaluator's
    # classification and order checks both fail), at three heights (its layout check half fails)
    mixed = [5, 2, 4, 1, 3, 0]
    xs = [22 + 42.4 * k for k in range(6)]
    heights = [70, 128, 186]
    first = {i: (xs[k], heights[(k + rng.randrange(3)) % 3]) for k, i in enumerate(mixed)}
    # answer: squares small to large, then circles small to large, on the middle line
    final = {i: (xs[i], 128) for i in range(6)}
    frames = []
    for t in np.linspace(0.0, 1.0, FRAMES):
        pos = [tuple(p0 + t * (p1 - p0) for p0, p1 in zip(first[i], final[i])) for i in range(6)]
        frames.append(_draw_shapes(shapes, pos))
    meta = {"task": SORT_TASK, "shapes": shapes, "initial_positions": [list(first[i]) for i in range(6)],
            "final_positions": [list(final[i]) for i in range(6)], "answer_order": list(range(6))}
    return frames, meta


# -- O-39 maze ----------------------------------------------------------------------------------------------------

def _carve(n: int, rng: random.Random) -> set:
    """Open passages of an n x n perfect maze (depth-first carving): a set of frozenset({cell, cell})."""
    seen, stack, open_ = {(0, 0)}, [(0, 0)], set()
    while stack:
        r, c = stack[-1]
        nxt = [(r + dr, c + dc) for dr, dc in ((0, 1), (1, 0), (0, -1), (-1, 0))
               if 0 <= r + dr < n and 0 <= c + dc < n and (r + dr, c + dc) not in seen]
        if not nxt:
            stack.pop()
            continue
        cell = rng.choice(nxt)
        open_.add(frozenset({(r, c), cell}))
        seen.add(cell)
        stack.append(cell)
    return open_


def _solve(n: int, open_: set, start, end) -> list:
    """The unique path of cells from ``start`` to ``end`` (breadth-first)."""
    prev, queue = {start: None}, [start]
    for cell in queue:
        r, c = cell
        for nb in ((r, c + 1), (r + 1, c), (r, c - 1), (r - 1, c)):
            if nb not in prev and frozenset({cell, nb}) in open_:
                prev[nb] = cell
                queue.append(nb)
    path, cell = [], end
    while cell is not None:
        path.append(cell)
        cell = prev[cell]
    return path[::-1]


def maze_sample(rng: random.Random, n: int = 5) -> tuple[list[np.ndarray], dict]:
    """(frames, metadata): FRAMES (SIZE, SIZE, 3) uint8 frames, the path drawn a little further in each."""
    open_ = _carve(n, rng)
    start, end = (0, 0), (n - 1, n - 1)
    if rng.random() < 0.5:
        start, end = (0, n - 1), (n - 1, 0)
    path = _solve(n, open_, start, end)
    margin, cell = 8, (SIZE - 16) // n  # 48 px cells

    def centre(rc):
        return (margin + rc[1] * cell + cell // 2, margin + rc[0] * cell + cell // 2)

    def maze(upto: float) -> np.ndarray:
        img = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
        d = ImageDraw.Draw(img)
        x0, y0 = margin, margin
        for r in range(n):
            for c in range(n):
                x, y = x0 + c * cell, y0 + r * cell
                if r == 0:
                    d.line([(x, y), (x + cell, y)], fill=WALL, width=4)
                if c == 0:
                    d.line([(x, y), (x, y + cell)], fill=WALL, width=4)
                if frozenset({(r, c), (r, c + 1)}) not in open_:
                    d.line([(x + cell, y), (x + cell, y + cell)], fill=WALL, width=4)
                if frozenset({(r, c), (r + 1, c)}) not in open_:
                    d.line([(x, y + cell), (x + cell, y + cell)], fill=WALL, width=4)
        sx, sy = centre(start)
        ex, ey = centre(end)
        d.ellipse([sx - 10, sy - 10, sx + 10, sy + 10], fill=START)
        d.rectangle([ex - 10, ey - 10, ex + 10, ey + 10], fill=END)
        k = int(round(upto * (len(path) - 1)))
        if k >= 1:
            d.line([centre(rc) for rc in path[:k + 1]], fill=PATH, width=8, joint="curve")
        return np.asarray(img)

    frames = [maze(t) for t in np.linspace(0.0, 1.0, FRAMES)]
    meta = {"task": MAZE_TASK, "grid": n, "start": list(start), "end": list(end),
            "open_passages": sorted([sorted(map(list, p)) for p in open_]), "solution": [list(p) for p in path]}
    return frames, meta


# -- the tree -----------------------------------------------------------------------------------------------------

def write_sample(folder: str, frames: list[np.ndarray], prompt: str, meta: dict | None) -> None:
    """One sample folder: first_frame.png, final_frame.png, ground_truth.mp4, prompt.txt[, metadata.json]."""
    os.makedirs(folder, exist_ok=True)
    Image.fromarray(frames[0]).save(os.path.join(folder, "first_frame.png"), optimize=True)
    Image.fromarray(frames[-1]).save(os.path.join(folder, "final_frame.png"), optimize=True)
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255  # (F, 3, H, W)
    export_video(video, os.path.join(folder, "ground_truth.mp4"), fps=FPS)
    with open(os.path.join(folder, "prompt.txt"), "w", encoding="utf-8") as f:
        f.write(prompt + "\n")
    if meta is not None:
        with open(os.path.join(folder, "metadata.json"), "w", encoding="utf-8") as f:
            json.dump(meta, f, sort_keys=True)
            f.write("\n")


def make_excerpt(out: str, samples: int = 2, seed: int = 0, pro: bool = False) -> list[str]:
    """Write ``samples`` samples of each task under ``out`` in the official layout; returns the sample folders."""
    check_int("samples", samples)
    rng = random.Random(seed)
    folders = []
    for task, draw in ((SORT_TASK, stable_sort_sample), (MAZE_TASK, maze_sample)):
        for k in range(samples):
            frames, meta = draw(rng)
            folder = os.path.join(out, SPLITS[task], task, f"{k:05d}")
            write_sample(folder, frames, PROMPTS[task], meta if pro else None)
            folders.append(folder)
    return folders


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, help="folder to write the excerpt into")
    p.add_argument("--samples", type=int, default=2, help="samples per task")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pro", action="store_true", help="VBVR-Pro-Bench layout (adds metadata.json)")
    args = p.parse_args(argv)
    for folder in make_excerpt(args.out, args.samples, args.seed, args.pro):
        print(folder)


if __name__ == "__main__":
    main()
