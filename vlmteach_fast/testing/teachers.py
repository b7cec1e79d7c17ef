"""Hand-written teachers whose right answer is known (oracles), for testing methods and loops in seconds."""

import torch
import torch.nn.functional as F

from vlmteach_fast.teacher import Queries, RewardOutput, as_queries

GEOM = dict(num_frames=5, height=32, width=32)


class BrightnessTeacher:
    """A hand-written differentiable teacher (the Teacher protocol): "Yes" = bright.

    log P(Yes | goal) = logsigmoid(k (mean of the last frame - 0.5)); the process question looks at all frames.
    Cheap and monotone, so loop mechanics (stopping, budgets, NaNs) can be tested in seconds.
    ``nan_at``: call indices (0-based) at which the reward is NaN; ``calls`` counts reward calls.
    """

    def __init__(self, sharpness: float = 8.0, nan_at=()):
        self.k, self.nan_at, self.calls = sharpness, set(nan_at), 0

    def synthesize_queries(self, prompt, first_frame=None, max_process=3):
        return Queries("Is the last frame bright?", ["Is the video bright throughout?"][:max_process])

    def reward(self, frames, queries, **kwargs):
        q = as_queries(queries)
        last = frames[:, -1].mean(dim=(1, 2, 3))
        whole = frames.mean(dim=(1, 2, 3, 4))
        lp = torch.stack([F.logsigmoid(self.k * (last - 0.5)), F.logsigmoid(self.k * (whole - 0.5))][: len(q)], -1)
        if self.calls in self.nan_at or "all" in self.nan_at:
            lp = lp * float("nan")
        self.calls += 1
        w = q.weight_tensor()
        w = w / w.sum()
        return RewardOutput(reward=(lp * w).sum(-1), log_probs=lp, weights=w, questions=q.questions, kinds=q.kinds)


class DarknessTeacher(BrightnessTeacher):
    """``BrightnessTeacher`` with the opposite preference ("Yes" = dark: it scores 1 - frames): a judge that ranks
    any set of videos in the reverse order, to show who picked."""

    def synthesize_queries(self, prompt, first_frame=None, max_process=3):
        return Queries("Is the last frame dark?", ["Is the video dark throughout?"][:max_process])

    def reward(self, frames, queries, **kwargs):
        return super().reward(1.0 - frames, queries, **kwargs)


def first_frame():
    """A fixed random first frame (3, 32, 32) float in [0, 1]."""
    return torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(3))
