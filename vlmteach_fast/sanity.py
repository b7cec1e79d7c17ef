"""Sanity methods: reference videos made without a video model, to read a benchmark's scores against.

- ``static``: the first frame held for ``sampling.num_frames`` frames (a video in which nothing happens);
- ``end_state``: the first frame, then the ground-truth final frame for the other ``num_frames - 1`` frames (a cut
  to the answer, with no motion that leads there);
- ``ground_truth``: the benchmark's own answer video, all of its frames.

A scorer that gives ``static`` about what it gives a method rewards videos that do nothing; one that gives
``ground_truth`` much less than full marks cannot see the task (docs/usage.md, "Sanity rows"). Frames are brought to
``sampling.height`` x ``width`` when both are set (``first_frame.fit_image`` with ``sampling.fit``, as a model run
at that size gets its first frame), else kept at the first frame's (the ground-truth video's) own size. The teacher,
when given, scores the video as it scores every method's; None leaves ``p_yes`` empty.
"""

from __future__ import annotations

import torch

from .baselines import MethodResult
from .cost import CostMeter

__all__ = ["SanityRefusal", "run_sanity", "read_video"]


class SanityRefusal(ValueError):
    """The item lacks what the sanity method needs (a first frame, a final frame, an answer video): recorded as the
    instance's error, without a traceback (nothing went wrong in the code)."""


def read_video(path: str) -> torch.Tensor:
    """Every frame of a video file as (F, 3, H, W) float32 in [0, 1] (imageio's ffmpeg reader)."""
    import imageio.v2 as imageio
    import numpy as np

    with imageio.get_reader(path, format="FFMPEG") as reader:
        frames = [np.asarray(f)[..., :3] for f in reader]
    if not frames:
        raise ValueError(f"ground-truth video {path!r} has no frames")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255.0).contiguous()


def _frame(value, missing: str) -> torch.Tensor:
    """A path, PIL image or (3, H, W) tensor in [0, 1] -> (3, H, W) float32; ``ValueError(missing)`` for None."""
    from .instance import _image_tensor, load_image

    if value is None:
        raise SanityRefusal(missing)
    return _image_tensor(load_image(value))


def _fit(frames: torch.Tensor, size, sampling) -> tuple[torch.Tensor, dict]:
    """(F, 3, H, W) -> (F, 3, h, w) at ``size`` (h, w) by ``sampling.fit``, or as given when ``size`` is None."""
    from .first_frame import fit_image

    if size is None:
        return frames, {"source": list(frames.shape[2:]), "fit": "none"}
    out = [fit_image(f, size[0], size[1], sampling.fit) for f in frames]
    return torch.stack([f for f, _ in out]), out[0][1]


def _video(name: str, image, ground_truth: dict, sampling) -> tuple[torch.Tensor, dict]:
    """The sanity video (F, 3, H, W) float32 in [0, 1] and its geometry record."""
    size = (sampling.height, sampling.width) if sampling.height and sampling.width else None
    if name == "ground_truth":
        video = ground_truth.get("video")
        if video is None:
            raise SanityRefusal("ground_truth needs the suite's ground-truth video, and this item has none "
                             "(VBVR: ground_truth.mp4 in the sample folder)")
        frames = read_video(video) if isinstance(video, str) else video.detach().float().cpu()
        frames, geometry = _fit(frames, size, sampling)
    else:
        first = _frame(image, f"{name} needs a first frame, and this item has none")
        first, geometry = _fit(first[None], size, sampling)
        if name == "static":
            frames = first.expand(sampling.num_frames, -1, -1, -1)
        else:
            final = _frame(ground_truth.get("final_frame"),
                           "end_state needs a ground-truth final frame, and this item has none (VBVR: "
                           "final_frame.png in the sample folder; RULER: gt_image_path)")
            final, _ = _fit(final[None], tuple(first.shape[2:]), sampling)
            frames = torch.cat([first, final.expand(sampling.num_frames - 1, -1, -1, -1)])
    h, w = frames.shape[2:]
    return frames.contiguous(), {**geometry, "num_frames": int(frames.shape[0]), "height": int(h), "width": int(w)}


def run_sanity(name: str, teacher, prompt: str, image=None, queries=None, sampling=None,
               ground_truth: dict | None = None) -> MethodResult:
    """Make sanity method ``name``'s video for one instance and score it with ``teacher`` (if given).

    Args:
        name: "static", "end_state" or "ground_truth" (``methods.SANITY_METHODS``).
        teacher: a ``Teacher`` that scores the video (queries as every method gets them), or None.
        prompt: the task prompt (the teacher writes its questions from it when ``queries`` is None).
        image: the first frame (path, PIL image or (3, H, W) tensor in [0, 1]); ``static`` and ``end_state``.
        queries: ``Queries`` / list of questions / None.
        sampling: ``SamplingConfig``: ``num_frames``, ``height``, ``width``, ``fit``.
        ground_truth: {"final_frame": path or (3, H, W) tensor, "video": path or (F, 3, H, W) tensor}, what the
            suite item has. A method whose part is missing raises ``SanityRefusal`` (a ``ValueError``) saying
            what it needs.
    """
    from .instance import SamplingConfig, _image_tensor, load_image, score_frames
    from .teacher import as_queries

    sampling = sampling or SamplingConfig()
    meter = CostMeter(None)
    frames, geometry = _video(name, image, ground_truth or {}, sampling)
    frames = frames[None]  # (1, F, 3, H, W)
    q, p_yes = None, []
    if teacher is not None:
        if queries is None:
            first = None if image is None else _image_tensor(load_image(image))
            q = teacher.synthesize_queries(prompt, first)
            meter.count_generate()
        else:
            q = as_queries(queries)
        _, p_yes = score_frames(teacher, frames, q, meter)
    return MethodResult(name, frames, q, list(p_yes), meter.finish(), [], prompt, geometry)
