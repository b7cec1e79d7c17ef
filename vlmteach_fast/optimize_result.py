"""What ``optimize`` returns: one ``StepInfo`` per step and the ``OptimizeResult`` of the run."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .cost import CostRecord
from .teacher import Queries

__all__ = ["STOP_REASONS", "StepInfo", "OptimizeResult"]

STOP_REASONS = ("all_yes", "plateau", "max_steps", "budget", "diverged", "judge_diverged", "interrupted")


@dataclass
class StepInfo:
    """One optimization step, as passed to ``callback`` and stored in ``OptimizeResult.history``."""

    step: int
    loss: float
    p_yes: list[float]
    lr: float
    seconds: float
    grad_norm: float
    skipped: bool = False
    best: bool = False
    judge_p_yes: list[float] | None = None  # the held-out judge's P(yes) on the same frames (when a judge is given)
    confirmed_p_yes: list[float] | None = None  # the teacher on the full decode, when an all-yes stop was checked

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class OptimizeResult:
    """What ``optimize`` returns.

    Attributes:
        frames: (1, F, 3, H, W) float32 in [0, 1], the final video (full VAE decode).
        adapter: the chosen adapter's weights {PEFT parameter name: tensor} (CPU copies).
        queries: the questions the teacher asked.
        history: one ``StepInfo`` per optimization step.
        stop_reason: one of ``STOP_REASONS``.
        cost: the ``CostRecord`` of the whole run (initial sample, steps, final sample, scoring).
        final_p_yes / initial_p_yes: P(Yes) per query on the full decode of the final / plain video (with
            ``OptimizeConfig.score_final=False``: the kept step's in-loop score, on its light decode).
        best_step: index of the step whose adapter was kept (-1: the fresh adapter).
        used_initial: True when the plain video scored higher and was returned.
        reasoner: the Reasoner used (holds the chosen adapter; ``save_adapter`` writes it).
        geometry: how the first frame was brought to the video's size (``instance.prepare_first_frame``).
        lora_steps: the adapter acts on the last ``lora_steps`` sampling steps only (``OptimizeConfig.lora_steps``);
            None: on all. A stock pipeline applies a loaded adapter on every step: reproduce such a video with
            ``Reasoner.sample(..., lora_steps=...)``.
    """

    frames: torch.Tensor
    adapter: dict
    queries: Queries
    history: list[StepInfo]
    stop_reason: str
    cost: CostRecord
    final_p_yes: list[float]
    initial_p_yes: list[float] | None = None
    initial_frames: torch.Tensor | None = None
    best_step: int = -1
    used_initial: bool = False
    reasoner: object = None
    geometry: dict = field(default_factory=dict)
    lora_steps: int | None = None

    @property
    def p_yes(self) -> list[float]:
        """P(Yes) per query on the returned video (``final_p_yes``; the ``MethodOutput`` protocol)."""
        return self.final_p_yes

    @property
    def interrupted(self) -> bool:
        """True when Ctrl-C stopped the loop early: the result holds the best adapter *so far*."""
        return self.stop_reason == "interrupted"

    def summary(self) -> dict:
        """JSON-ready summary (no tensors)."""
        return {
            "stop_reason": self.stop_reason,
            "interrupted": self.interrupted,
            "steps": len(self.history),
            "best_step": self.best_step,
            "used_initial": self.used_initial,
            "questions": self.queries.questions,
            "final_p_yes": self.final_p_yes,
            "initial_p_yes": self.initial_p_yes,
            "cost": self.cost.to_dict(),
            "geometry": self.geometry,
            "lora_steps": self.lora_steps,
        }

    def save(self, out_dir, fps: int = 8) -> dict:
        """Write video.mp4, video.gif, adapter/ (``self.adapter``), history.json, reward.png, result.json and
        manifest.json as one set, moved into place whole (``outputs.commit_dir``)."""
        from .outputs import save_optimize_result

        return save_optimize_result(self, out_dir, fps=fps)
