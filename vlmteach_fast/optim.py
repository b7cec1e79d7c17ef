"""Optimizers of the per-instance LoRA.

``optimize`` takes a handful of steps from a fresh adapter. AdamW's first steps are nearly sign steps
(m / sqrt(v) = g / |g| at step 1): every coordinate moves by ``lr`` whether its gradient carries signal or is
numerical noise, so the update's direction is only loosely the reward's gradient. ``NormalizedSGD`` moves along the
gradient itself, with AdamW's first-step size: each step has norm ``lr * sqrt(n)`` (n = number of parameters), the
norm of a sign step of size ``lr``, so one ``lr`` means about the same step length for both.
"""

from __future__ import annotations

import math

import torch

__all__ = ["NormalizedSGD", "OPTIMIZERS", "LR_SCHEDULES", "lr_factor", "make_optimizer"]

OPTIMIZERS = ("adamw", "nsgd")
LR_SCHEDULES = ("constant", "linear", "cosine")


class NormalizedSGD(torch.optim.Optimizer):
    """Gradient descent on the whole parameter vector's direction: p -= lr * sqrt(n) * d / |d|, where d is the
    gradient (with heavy-ball momentum ``momentum`` on the normalized gradients) and n the number of parameters."""

    def __init__(self, params, lr: float, momentum: float = 0.0, eps: float = 1e-12):
        super().__init__(params, dict(lr=lr, momentum=momentum, eps=eps))

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            n = sum(p.numel() for p in params)
            norm = torch.sqrt(sum(p.grad.float().square().sum() for p in params))
            scale = group["lr"] * math.sqrt(n) / (norm + group["eps"])
            for p in params:
                d = p.grad * scale
                if group["momentum"] > 0:
                    buf = self.state[p].get("momentum")
                    buf = d.clone() if buf is None else buf.mul_(group["momentum"]).add_(d)
                    self.state[p]["momentum"] = buf
                    d = buf
                p.sub_(d.to(p.dtype))
        return loss


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """``"adamw"`` (torch AdamW) or ``"nsgd"`` (``NormalizedSGD``, no weight decay) over ``params``."""
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "nsgd":
        return NormalizedSGD(params, lr=lr)
    raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")


def lr_factor(schedule: str, update: int, updates: int, end: float = 0.1, first: float = 1.0) -> float:
    """The multiplier of ``lr`` for update ``update`` (0-based) of ``updates`` planned.

    ``"constant"``: 1. ``"linear"`` / ``"cosine"``: from 1 at the first update down to ``end`` at the last (a loop of a
    few steps from a fresh adapter moves most in its first updates; smaller late updates keep it near the good videos
    it has reached). ``first`` scales the first update alone (a larger first step: ``first`` > 1).
    """
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr schedule must be one of {LR_SCHEDULES}, got {schedule!r}")
    frac = update / (updates - 1) if updates > 1 else 0.0
    frac = min(max(frac, 0.0), 1.0)
    if schedule == "linear":
        factor = 1.0 - (1.0 - end) * frac
    elif schedule == "cosine":
        factor = end + (1.0 - end) * 0.5 * (1.0 + math.cos(math.pi * frac))
    else:
        factor = 1.0
    return factor * (first if update == 0 else 1.0)
