"""Oracle rewards for the toy world: the teacher replaced by ground truth, to test the machinery apart from the signal.

``GroundTruthOracle`` follows the Teacher protocol (``synthesize_queries`` + differentiable ``reward``) with
log P(yes) = -sharpness * MSE(frames, the instance's solution video) for every question. If optimize cannot raise the
rule score with it, the loop (prediction, decoding, LoRA steps, budget) is at fault, not the teacher; with it, the
toy loop gained +0.10 rule score at Best-of-5's time and +0.32 uncapped (docs/method.md).

``RedOracle`` rewards red frames: whatever the loop does to raise it is visible in the pixels, so a light decoder that
the loop can satisfy alone shows up as a final (full-decode) video that did not follow the loop's reward
(docs/light_decoding.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..teacher import Queries, RewardOutput, as_queries
from ..teacher.base import check_frames
from .queries import queries_for
from .tasks import ToyInstance

__all__ = ["GroundTruthOracle", "RedOracle"]


class GroundTruthOracle:
    """Teacher-protocol oracle for one instance: log P(yes | any question) = -sharpness * MSE to the solution.

    Args:
        instance: the toy instance whose ``solution`` (9, 3, 32, 32) is the target.
        sharpness: scale of the MSE in the log-probability (P(yes) = exp(-sharpness * MSE)); 20 puts the plain
            model's samples (MSE ~0.03) near P(yes) 0.5 and the solution at 1.
    """

    def __init__(self, instance: ToyInstance, sharpness: float = 20.0):
        if not isinstance(instance, ToyInstance):
            raise TypeError(f"`instance` must be a ToyInstance, got {type(instance).__name__}")
        if not sharpness > 0:
            raise ValueError(f"`sharpness` must be > 0, got {sharpness!r}")
        self.instance, self.sharpness = instance, float(sharpness)

    def synthesize_queries(self, prompt: str, first_frame=None, max_process: int = 3) -> Queries:
        """The instance's toy questions (the oracle ignores their text)."""
        return queries_for(self.instance, max_process=min(max_process, 3))

    def reward(self, frames: torch.Tensor, queries, weights=None) -> RewardOutput:
        """frames (B, 9, 3, 32, 32) in [0, 1] -> ``RewardOutput`` with the same log-prob for every question."""
        q = as_queries(queries)
        target = self.instance.solution.to(frames.device, torch.float32)
        if frames.dim() != 5 or tuple(frames.shape[1:]) != tuple(target.shape):
            raise ValueError(f"`frames` must have shape (B, {', '.join(map(str, target.shape))}), got "
                             f"{tuple(frames.shape)}")
        lp = -self.sharpness * (frames.float() - target).square().mean(dim=(1, 2, 3, 4))  # (B,)
        log_probs = lp[:, None].expand(-1, len(q.questions))
        w = q.weight_tensor(device=frames.device) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        w = w / w.sum()
        return RewardOutput(reward=(log_probs * w).sum(-1), log_probs=log_probs, weights=w, questions=q.questions,
                            kinds=q.kinds)


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
