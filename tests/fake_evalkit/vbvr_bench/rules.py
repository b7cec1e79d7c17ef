"""NumPy mirrors of two VBVR-EvalKit rule evaluators, for the stand-in on machines without OpenCV.

They follow the official ``StableSortEvaluator`` (G-3) and ``MazePathfindingEvaluator`` (O-39) step by step: the same
HSV thresholds (OpenCV's scale: hue 0-180), the same part weights and thresholds. Where the official code calls an
OpenCV routine the mirror uses a plain equivalent: the pixel count of an 8-connected mask component for
``contourArea``, its fill of its bounding box for the vertex count of ``approxPolyDP`` (square ~1, disc ~0.79,
triangle ~0.5). On flat-coloured frames such as tests/data/vbvr_visible the two agree within a few hundredths.
"""

import numpy as np


def hsv(rgb):
    """(H, W, 3) uint8 RGB -> (H, W, 3) float HSV on OpenCV's scale (H 0-180, S and V 0-255)."""
    x = rgb.astype(np.float64)
    v = x.max(-1)
    delta = v - x.min(-1)
    s = np.where(v > 0, delta / np.maximum(v, 1e-9) * 255, 0)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    d = np.maximum(delta, 1e-9)
    h = np.where(v == r, (g - b) / d, np.where(v == g, 2 + (b - r) / d, 4 + (r - g) / d)) * 60
    h = np.where(delta == 0, 0, h % 360)
    return np.stack([h / 2, s, v], -1)


def in_range(frame_hsv, lo, hi):
    return np.all((frame_hsv >= lo) & (frame_hsv <= hi), axis=-1)


def components(mask):
    """8-connected components of a bool mask: a list of (N, 2) arrays of (row, col)."""
    seen = np.zeros_like(mask, dtype=bool)
    h, w = mask.shape
    out = []
    for r0, c0 in zip(*np.nonzero(mask)):
        if seen[r0, c0]:
            continue
        seen[r0, c0] = True
        stack, pix = [(r0, c0)], []
        while stack:
            r, c = stack.pop()
            pix.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    if 0 <= rr < h and 0 <= cc < w and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        out.append(np.array(pix))
    return out


# -- G-3 stable sort ----------------------------------------------------------------------------------------------

def _shapes(frame):
    mask = in_range(hsv(frame), (0, 30, 30), (180, 255, 255))
    shapes = []
    for pix in components(mask):
        if len(pix) < 500:
            continue
        cy, cx = (int(v) for v in pix.mean(0))
        box = (np.ptp(pix[:, 0]) + 1) * (np.ptp(pix[:, 1]) + 1)
        fill = len(pix) / box
        kind = "square" if fill > 0.9 else "circle" if fill > 0.6 else "triangle"
        colour = frame[max(0, cy - 5):cy + 5, max(0, cx - 5):cx + 5].reshape(-1, 3).mean(0)
        shapes.append({"type": kind, "center": (cx, cy), "area": float(len(pix)), "color": colour})
    return shapes


def _dist(a, b):
    return float(np.sqrt(((np.asarray(a) - np.asarray(b)) ** 2).sum()))


def _groups(shapes):
    groups = []
    for s in shapes:
        for g in groups:
            if _dist(s["color"], g[0]["color"]) < 50:
                g.append(s)
                break
        else:
            groups.append([s])
    return groups


def stable_sort(frames):
    """G-3's rule score of a video (list of (H, W, 3) uint8 RGB frames)."""
    if len(frames) < 2:
        return 0.0
    first, last = _shapes(frames[0]), _shapes(frames[-1])
    groups = _groups(last)
    if len(last) >= 6 and len(groups) >= 2:
        row = sorted(last, key=lambda s: s["center"][0])
        transitions = sum(_dist(a["color"], b["color"]) > 50 for a, b in zip(row, row[1:]))
        extra = transitions - (len(groups) - 1)
        classification = 1.0 if extra <= 0 else max(0.0, 1.0 - extra * 0.3)
    else:
        classification = max(0.0, len(last) / 6.0) * 0.5
    order = 0.0
    if groups:
        parts = []
        for g in groups:
            if len(g) >= 2:
                sizes = [s["area"] for s in sorted(g, key=lambda s: s["center"][0])]
                parts.append(sum(a < b for a, b in zip(sizes, sizes[1:])) / (len(sizes) - 1))
        order = float(np.mean(parts)) if parts else 0.5
    fidelity = 0.0
    if first and last:
        count = max(0.0, 1.0 - abs(len(first) - len(last)) / len(first))
        a0, a1 = sum(s["area"] for s in first), sum(s["area"] for s in last)
        area = min(a0, a1) / max(a0, a1)
        t0, t1 = sorted(s["type"] for s in first), sorted(s["type"] for s in last)
        types = sum(a == b for a, b in zip(t0, t1)) / max(len(t0), len(t1))
        fidelity = 0.4 * count + 0.3 * area + 0.3 * types
    layout = max(0.0, 1.0 - float(np.var([s["center"][1] for s in last])) / 5000.0) if last else 0.0
    return 0.3 * classification + 0.3 * order + 0.3 * fidelity + 0.1 * layout


# -- O-39 maze ----------------------------------------------------------------------------------------------------

def _walls(frame):
    grey = frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return grey <= 50


def _path(frame):
    return in_range(hsv(frame), (10, 100, 100), (30, 255, 255))


def _centre(mask):
    comps = components(mask)
    if not comps:
        return None
    cy, cx = max(comps, key=len).mean(0)
    return int(cx), int(cy)


def maze(frames):
    """O-39's rule score of a video (list of (H, W, 3) uint8 RGB frames)."""
    if len(frames) < 2:
        return 0.0
    first, last = frames[0], frames[-1]
    path, walls = _path(last), _walls(first)
    n = path.sum()
    if n == 0:
        validity = 0.3
    else:
        ratio = (path & walls).sum() / n
        validity = 1.0 if ratio < 0.05 else 0.7 if ratio < 0.1 else 0.3
    h = hsv(first)
    start = _centre(in_range(h, (35, 100, 100), (85, 255, 255)))
    end = _centre(in_range(h, (0, 100, 100), (10, 255, 255)) | in_range(h, (160, 100, 100), (180, 255, 255)))
    if start is None or end is None:
        completeness = 0.5
    else:
        def near(pos):
            x, y = pos
            return int(path[max(0, y - 30):y + 30, max(0, x - 30):x + 30].sum() > 50)
        hits = near(start) + near(end)
        completeness = (0.3, 0.6, 1.0)[hits]
    labels = len(components(path)) + 1  # with the background, as cv2.connectedComponents counts
    navigation = 1.0 if labels == 2 else 0.6 if labels <= 4 else 0.3
    w0, w1 = walls, _walls(last)
    kept = (w0 & w1).sum() / w0.sum() if w0.sum() else 0.5
    preservation = 0.5 if not w0.sum() else 1.0 if kept > 0.9 else 0.7 if kept > 0.7 else 0.4
    return 0.45 * validity + 0.3 * completeness + 0.2 * navigation + 0.05 * preservation


RULES = {"G-3_stable_sort_data-generator": stable_sort, "O-39_maze_data-generator": maze}
