"""Oracle teachers for diagnosing the loop without a learned teacher (DESIGN.md: "replace the teacher by an oracle").

``RedOracle`` rewards red frames: whatever the loop does to raise it is visible in the pixels, so a light decoder
that the loop can satisfy alone shows up as a final (full-decode) video that did not follow the loop's reward.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..teacher import Queries, RewardOutput, as_queries
from ..teacher.base import check_frames

__all__ = ["RedOracle"]


class RedOracle:
    """Teacher protocol: P(Yes) = sigmoid(scale * (mean red - mean blue) + bias) over every pixel of every frame.

    Defaults: the shipped toy model's plain videos have mean red - blue = 0.005 to 0.017 (6 test instances), so they
    score ~0.03; P(Yes) >= 0.5 needs mean red - blue >= 0.35 (a visibly red video), >= 0.9 needs >= 0.57.
    Every question gets the same score; ``calls`` counts reward calls.
    """

    def __init__(self, scale: float = 10.0, bias: float = -3.5):
        self.scale, self.bias, self.calls = float(scale), float(bias), 0

    def synthesize_queries(self, prompt: str, first_frame=None, max_process: int = 3) -> Queries:
        return Queries("Is the video red?", [])

    def p_yes(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, F, 3, H, W) in [0, 1] -> (B,) P(Yes)."""
        return self.log_p_yes(frames).exp()

    def log_p_yes(self, frames: torch.Tensor) -> torch.Tensor:
        check_frames(frames)
        d = frames[:, :, 0].mean(dim=(1, 2, 3)) - frames[:, :, 2].mean(dim=(1, 2, 3))  # (B,)
        return F.logsigmoid(self.scale * d + self.bias)

    def reward(self, frames: torch.Tensor, queries, **kwargs) -> RewardOutput:
        q = as_queries(queries)
        self.calls += 1
        lp = self.log_p_yes(frames)[:, None].expand(-1, len(q))  # (B, Q)
        w = q.weight_tensor()
        w = w / w.sum()
        return RewardOutput(reward=(lp * w).sum(-1), log_probs=lp, weights=w, questions=q.questions, kinds=q.kinds)
