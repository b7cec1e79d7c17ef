"""The two units a ``best_of_n:N`` budget compares, cut into named phases: one ``optimize`` step and one Best-of-N
candidate, through the library calls ``optimize`` and ``best_of_n`` make.

``clock`` is anything with a ``phase(name)`` context manager: the GPU check's wall clock (bench/gpu_shapes.py) or
the shape-only account (``ShapeOnlyRun``).
"""

from __future__ import annotations

import torch

__all__ = ["CANDIDATE_PHASES", "STEP_PHASES", "VARIANTS", "candidate", "optimize_step"]

STEP_PHASES = ("predict", "light_decode", "reward_fwd", "reward_bwd", "denoiser_bwd", "optimizer")
CANDIDATE_PHASES = ("sample_4step", "full_decode", "reward_score")
# The step's settings: ``Reasoner.predict`` keywords.
VARIANTS = {
    "one_step": dict(mode="one_step"),
    "block_checkpointing": dict(mode="one_step", block_checkpointing=True),
    "k_step2": dict(mode="k_step", steps=4, grad_steps=2),
}


def optimize_step(clock, reasoner, decoder, teacher, prepared, queries, opt, variant: dict) -> None:
    """predict -> light decode -> reward forward -> reward backward (to the frames) -> denoiser backward (light
    decode + denoiser, checkpoint recomputation included) -> AdamW step; ``variant``: ``Reasoner.predict`` keywords."""
    with clock.phase("predict"):
        pred = reasoner.predict(prepared, **variant)
    with clock.phase("light_decode"):
        frames = decoder(pred.latents)  # (1, F_sel, 3, H, W)
    leaf = frames.detach().requires_grad_(True)  # splits the backward into the teacher's and the denoiser's part
    with clock.phase("reward_fwd"):
        loss = -teacher.reward(leaf, queries).reward.mean()
    with clock.phase("reward_bwd"):
        loss.backward()
    with clock.phase("denoiser_bwd"):
        frames.backward(leaf.grad)
    with clock.phase("optimizer"):
        opt.step()
        opt.zero_grad(set_to_none=True)


def candidate(clock, reasoner, teacher, prepared, queries, steps: int = 4) -> None:
    """``steps``-step sample -> full VAE decode -> teacher score, as ``best_of_n`` runs each candidate."""
    from ..instance import score_frames

    with clock.phase("sample_4step"):
        latents = reasoner.sample(prepared, steps=steps, decode=False).latents
    with clock.phase("full_decode"), torch.no_grad():
        frames = reasoner.decode(latents)
    with clock.phase("reward_score"):
        score_frames(teacher, frames, queries)
