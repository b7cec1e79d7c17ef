"""What every teacher shares: the `Teacher` protocol, `Queries`, `RewardOutput`, input checks, weighted sums.

A teacher turns a task into questions (`synthesize_queries`) and scores frames against them (`reward`), with the score
differentiable w.r.t. the frames. `VLMTeacher` is the VLM-backed one; CLIP/SigLIP similarity or hand-written
differentiable rules plug in by implementing the same two methods. `WeightedTeachers` sums several (each may ask its
own questions); `EnsembleTeacher` asks several the same questions and combines their answers per question.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, Sequence, runtime_checkable

import torch

GOAL = "goal"
PROCESS = "process"
# Frames in [0, 1] are checked with this slack: a bf16 frame rescaled from [-1, 1] can land one bf16 ulp past 1.0
# (2**-8 = 0.0039); a frame further outside is almost surely in [-1, 1] or [0, 255] instead, which the error names.
RANGE_SLACK = 4e-3


@dataclass
class Queries:
    """The questions a teacher asks about a video: one `goal` question and 0+ `process` questions.

    `weights` (optional) gives one non-negative weight per question, goal first then process in order; default 1 each.
    """

    goal: str
    process: list[str] = field(default_factory=list)
    weights: list[float] | None = None

    def __post_init__(self):
        if not isinstance(self.goal, str) or not self.goal.strip():
            raise ValueError(f"Queries.goal must be a non-empty string, got {self.goal!r}")
        if isinstance(self.process, str) or not all(isinstance(q, str) and q.strip() for q in self.process):
            raise ValueError(f"Queries.process must be a list of non-empty strings, got {self.process!r}")
        self.process = list(self.process)
        if self.weights is not None:
            self.weights = [float(w) for w in self.weights]
            if len(self.weights) != len(self):
                raise ValueError(
                    f"Queries.weights must have one weight per question (1 goal + {len(self.process)} process = "
                    f"{len(self)}), got {len(self.weights)}"
                )
            if any(not (w >= 0.0) for w in self.weights) or sum(self.weights) <= 0.0:
                raise ValueError(f"Queries.weights must be >= 0 with a positive sum, got {self.weights}")

    def __len__(self) -> int:
        return 1 + len(self.process)

    @property
    def questions(self) -> list[str]:
        """All questions, goal first."""
        return [self.goal, *self.process]

    @property
    def kinds(self) -> list[str]:
        """`"goal"` or `"process"` per question, aligned with `questions`."""
        return [GOAL] + [PROCESS] * len(self.process)

    def weight_tensor(self, device=None, dtype=torch.float32) -> torch.Tensor:
        """(Q,) weights, 1 each when none were given."""
        w = self.weights if self.weights is not None else [1.0] * len(self)
        return torch.tensor(w, device=device, dtype=dtype)


def as_queries(queries) -> Queries:
    """Accept `Queries`, a non-empty list of strings (first = goal), or a (goal, [process...]) tuple."""
    if isinstance(queries, Queries):
        return queries
    if isinstance(queries, tuple) and len(queries) == 2 and isinstance(queries[0], str):
        return Queries(goal=queries[0], process=list(queries[1]))
    if isinstance(queries, (list, tuple)):
        if len(queries) == 0:
            raise ValueError("queries must hold at least one question (the goal), got an empty list")
        if not all(isinstance(q, str) for q in queries):
            raise TypeError(f"queries must be strings, got types {[type(q).__name__ for q in queries]}")
        return Queries(goal=queries[0], process=list(queries[1:]))
    raise TypeError(
        f"queries must be Queries, a list of strings or a (goal, process_list) tuple, got {type(queries).__name__}"
    )


@dataclass
class RewardOutput:
    """What `Teacher.reward` returns.

    Attributes:
        reward: (B,) float, the weighted mean over questions of `log_probs`; differentiable w.r.t. the frames.
        log_probs: (B, Q) float, per-question log P("Yes") (or the yes-vs-no normalized form), goal first.
        weights: (Q,) float, the weights `reward` used (normalized to sum 1).
        questions: the Q questions, aligned with the last axis of `log_probs`.
        kinds: `"goal"` / `"process"` per question.
        stats: counters for budget accounting, e.g. {"vision_calls": 1, "lm_calls": 4}.
    """

    reward: torch.Tensor
    log_probs: torch.Tensor
    weights: torch.Tensor
    questions: list[str]
    kinds: list[str]
    stats: dict = field(default_factory=dict)

    @property
    def p_yes(self) -> list[float]:
        """P("Yes") per question, averaged over the batch: Q floats (no gradient)."""
        return self.log_probs.detach().float().exp().mean(0).tolist()


@runtime_checkable
class Teacher(Protocol):
    """Anything that writes questions about a task and scores frames differentiably against them."""

    def synthesize_queries(self, prompt: str, first_frame: torch.Tensor | None = None, max_process: int = 3) -> Queries:
        ...

    def reward(self, frames: torch.Tensor, queries, **kwargs) -> RewardOutput:
        ...


def check_frames(frames, name: str = "frames") -> torch.Tensor:
    """Validate a video batch: a floating (B, F, 3, H, W) tensor with finite values in [0, 1]. Returns it
    unchanged."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"`{name}` must be a torch.Tensor of shape (B, F, 3, H, W), got {type(frames).__name__}")
    if frames.ndim != 5:
        raise ValueError(f"`{name}` must have shape (B, F, 3, H, W) (rank 5), got shape {tuple(frames.shape)}")
    if frames.shape[2] != 3:
        raise ValueError(f"`{name}` must have 3 (RGB) channels at dim 2, got shape {tuple(frames.shape)}")
    if min(frames.shape) == 0:
        raise ValueError(f"`{name}` must not be empty, got shape {tuple(frames.shape)}")
    if not frames.is_floating_point():
        raise TypeError(f"`{name}` must be a floating tensor in [0, 1] (e.g. float32), got dtype {frames.dtype}")
    with torch.no_grad():
        bad = int((~torch.isfinite(frames)).sum())
        if bad:  # not a range the caller can convert: what made the frames is broken
            raise ValueError(f"`{name}` holds {bad} NaN / inf value(s) of {frames.numel()}: the video model produced "
                             "them (corrupted or overflowing weights, e.g. float16 on the CPU)")
        lo, hi = float(frames.min()), float(frames.max())
    if not (lo >= -RANGE_SLACK and hi <= 1.0 + RANGE_SLACK):
        raise ValueError(
            f"`{name}` must hold values in [0, 1], got min {lo:.4g} and max {hi:.4g} "
            "(convert [-1, 1] with (x + 1) / 2 and uint8-range with x / 255)"
        )
    return frames


def _check_teachers(teachers, minimum: int) -> list:
    """The members of a teacher group as a list: at least ``minimum``, each following the `Teacher` protocol."""
    teachers = list(teachers)
    if len(teachers) < minimum:
        need = {1: "one teacher", 2: "two teachers"}.get(minimum, f"{minimum} teachers")
        raise ValueError(f"teachers must hold at least {need}, got {len(teachers) or 'an empty list'}")
    for i, t in enumerate(teachers):
        if not isinstance(t, Teacher):
            raise TypeError(f"teachers[{i}] must have synthesize_queries() and reward(), got {type(t).__name__}")
    return teachers


class _TeacherGroup:
    """Several teachers behind one `Teacher`: the questions are the first member's."""

    teachers: list

    def synthesize_queries(self, prompt: str, first_frame: torch.Tensor | None = None, max_process: int = 3) -> Queries:
        return self.teachers[0].synthesize_queries(prompt, first_frame, max_process=max_process)


class WeightedTeachers(_TeacherGroup):
    """Sum of several teachers: reward = sum_i w_i * teacher_i.reward(frames, queries_i).reward.

    Args:
        teachers: the teachers, each following the `Teacher` protocol.
        weights: one float per teacher (default 1 each).
    Queries come from the first teacher unless a list with one `Queries` per teacher is passed to `reward`.
    """

    def __init__(self, teachers: Sequence[Teacher], weights: Sequence[float] | None = None):
        teachers = _check_teachers(teachers, 1)
        weights = [1.0] * len(teachers) if weights is None else [float(w) for w in weights]
        if len(weights) != len(teachers):
            raise ValueError(f"weights must have {len(teachers)} entries (one per teacher), got {len(weights)}")
        self.teachers, self.weights = teachers, weights

    def reward(self, frames: torch.Tensor, queries, **kwargs) -> RewardOutput:
        per = queries if isinstance(queries, list) and queries and isinstance(queries[0], Queries) else None
        if per is not None and len(per) != len(self.teachers):
            raise ValueError(f"queries must hold one Queries per teacher ({len(self.teachers)}), got {len(per)}")
        outs = [t.reward(frames, per[i] if per else queries, **kwargs) for i, t in enumerate(self.teachers)]
        total = sum(w * o.reward for w, o in zip(self.weights, outs))
        stats = {f"teacher{i}": o.stats for i, o in enumerate(outs)}
        return RewardOutput(
            reward=total,
            log_probs=torch.cat([o.log_probs for o in outs], dim=1),
            weights=torch.cat([w * o.weights for w, o in zip(self.weights, outs)]),
            questions=[q for o in outs for q in o.questions],
            kinds=[k for o in outs for k in o.kinds],
            stats=stats,
        )


ENSEMBLE_REDUCTIONS = ("mean", "min")


class EnsembleTeacher(_TeacherGroup):
    """Several teachers answering the same questions, combined per question: a video must convince all of them.

    An ensemble of independently trained teachers is harder to game than one of them: a pattern that fools one
    member is unlikely to fool the others, and ``reduce="min"`` scores every question by its most sceptical member.

    Args:
        teachers: two or more teachers (the `Teacher` protocol); queries come from the first.
        reduce: ``"mean"`` (per question, the mean of the members' log P(yes): the geometric mean of P(yes)) or
            ``"min"`` (the lowest log P(yes); its gradient flows through that member only).

    ``reward(frames (B, F, 3, H, W) in [0, 1], queries)`` returns a `RewardOutput` with ``log_probs`` (B, Q) the
    combined per-question log P(yes) and ``reward`` (B,) their weighted mean (the first member's weights). Costs
    one reward call per member.
    """

    def __init__(self, teachers: Sequence[Teacher], reduce: str = "mean"):
        teachers = _check_teachers(teachers, 2)
        if reduce not in ENSEMBLE_REDUCTIONS:
            raise ValueError(f"reduce must be one of {ENSEMBLE_REDUCTIONS}, got {reduce!r}")
        self.teachers, self.reduce = teachers, reduce

    def reward(self, frames: torch.Tensor, queries, weights=None) -> RewardOutput:
        outs = [t.reward(frames, queries, weights=weights) for t in self.teachers]
        logs = torch.stack([o.log_probs.float() for o in outs])  # (members, B, Q)
        combined = logs.mean(0) if self.reduce == "mean" else logs.min(0).values
        first = outs[0]
        w = first.weights.to(combined)
        return RewardOutput(reward=(combined * w).sum(-1) / w.sum(), log_probs=combined, weights=first.weights,
                            questions=first.questions, kinds=first.kinds,
                            stats={f"teacher{i}": o.stats for i, o in enumerate(outs)})
