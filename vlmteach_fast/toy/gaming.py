"""The gaming test of a toy teacher: optimize against it and watch its score and the rule score of the same videos.

``gaming_run`` optimizes a fresh LoRA against ``teacher`` on one instance, uncapped, in k-step mode with all
``SAMPLE_STEPS`` steps carrying gradient and the full VAE in the loop, so the video the teacher scores at step t is
exactly the final sample of the adapter at step t. A teacher that cannot be gamed shows the rule score rising with
its P(yes); a gamed one shows P(yes) rising alone. The videos it records are also the hard negatives (and
positives) of the teacher's adversarial training rounds (``scripts/train_toy_teacher.py --rounds``).

``verdict`` compares a teacher's answers on one video with the rule scorer: fooled (yes to every question, video
failed), split into wrong answers and what the rule parts themselves, taken as P(yes), would say.

``gradient_alignment`` asks where the teacher's gradient points: the cosine between the gradient of the loop's reward
with respect to the frames and the step toward the ground truth (the ground-truth oracle's direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..instance import SamplingConfig
from .models import SAMPLE_STEPS
from .queries import queries_for
from .scorers import PARTS, RuleScore, score_video
from .tasks import ToyInstance
from .world import NUM_FRAMES, SIZE

__all__ = ["GamingTrace", "gaming_run", "RecordingTeacher", "gradient_alignment", "Verdict", "verdict"]


@dataclass
class Verdict:
    """How a teacher's answers on one video compare with the rule scorer's.

    Attributes:
        fooled: the teacher says yes (P > 0.5) to every question while the rule scorer fails the video.
        wrong_yes: questions answered yes whose rule part is < 0.5 (the rule mostly does not hold).
        calibrated_fooled: every rule part is > 0.5 while the video fails: the verdict of the parts themselves taken
            as P(yes), i.e. of a teacher trained on them as soft labels and perfectly calibrated. Where this is True,
            ``fooled`` is what calibration to the soft labels gives, not a wrong answer.
    """

    fooled: bool
    wrong_yes: int
    calibrated_fooled: bool


def verdict(p_yes: list[float], rule: RuleScore) -> Verdict:
    """The ``Verdict`` of a toy teacher's answers ``p_yes`` (one per question, in ``queries_for`` order: goal,
    rules, integrity, background, each asking about the rule part of the same name) on a video scored ``rule``."""
    if len(p_yes) != len(PARTS):
        raise ValueError(f"`p_yes` must hold one P(yes) per toy question ({len(PARTS)}: {PARTS}), got {len(p_yes)}")
    parts = [rule.parts[k] for k in PARTS]
    return Verdict(fooled=all(p > 0.5 for p in p_yes) and not rule.passed,
                   wrong_yes=sum(p > 0.5 and v < 0.5 for p, v in zip(p_yes, parts)),
                   calibrated_fooled=all(v > 0.5 for v in parts) and not rule.passed)


def gradient_alignment(teacher, videos: torch.Tensor, instances: list[ToyInstance],
                       create_graph: bool = False) -> torch.Tensor:
    """(B,) cos(g, d) per video: g = d(reward)/d(frames), the teacher's reward exactly as the loop computes it (its
    own view applied inside), d = the instance's solution - the video (where the ground-truth oracle's gradient
    points). ``videos``: (B, 9, 3, 32, 32) float in [0, 1]; ``instances``: B toy instances. ``create_graph=True``
    keeps the graph so the cosine can be trained through (double backward; eager attention)."""
    x = videos.detach().clone().requires_grad_(True)
    cos = videos.new_zeros(len(instances))
    for task in sorted({i.task_type for i in instances}):
        sel = [n for n, i in enumerate(instances) if i.task_type == task]
        with torch.enable_grad():
            reward = teacher.reward(x[sel], queries_for(task)).reward.sum()
            g = torch.autograd.grad(reward, x, create_graph=create_graph)[0][sel]
        d = torch.stack([instances[n].solution for n in sel]).to(videos) - videos[sel].detach()
        cos = cos.index_put((torch.tensor(sel),), torch.nn.functional.cosine_similarity(g.flatten(1), d.flatten(1)))
    return cos


class RecordingTeacher:
    """Teacher proxy that keeps a detached CPU copy of every video its ``reward`` is called on."""

    def __init__(self, teacher):
        self.teacher, self.frames = teacher, []

    def reward(self, frames, queries, **kwargs):
        self.frames.append(frames.detach().float().cpu())
        return self.teacher.reward(frames, queries, **kwargs)

    def __getattr__(self, name):
        return getattr(self.teacher, name)


@dataclass
class GamingTrace:
    """One gaming run. ``videos``: (S, 9, 3, 32, 32) the videos scored at steps 0..S-1; ``p_yes``: S lists of
    P(yes) per question; ``scores``: the S ``RuleScore``s of the same videos."""

    videos: torch.Tensor
    p_yes: list[list[float]]
    scores: list[RuleScore]

    @property
    def rule(self) -> list[float]:
        """The S rule scores."""
        return [s.score for s in self.scores]

    @property
    def last(self) -> RuleScore:
        """The last video's ``RuleScore``."""
        return self.scores[-1]

    @property
    def fooled(self) -> bool:
        """The last video: the teacher says yes to every question (> 0.5) while the rule scorer fails it."""
        return verdict(self.p_yes[-1], self.last).fooled


def gaming_run(pipe, teacher, instance: ToyInstance, steps: int = 16, lr: float = 1e-2, rank: int = 8,
               seed: int = 0) -> GamingTrace:
    """Optimize against ``teacher`` on ``instance`` for ``steps`` steps (no early stop) and trace both scores.

    Args:
        pipe: the toy video pipeline (``toy.load_pipeline()``) or its Reasoner.
        teacher: a toy teacher (``toy.load_teacher()``) or any Teacher.
        instance: the task instance.
        steps: optimization steps (every one is recorded).
        lr: AdamW learning rate.
        rank: LoRA rank.
        seed: noise seed.
    """
    from ..optimization import OptimizeConfig, optimize
    from ..reasoner import LightDecoderConfig, LoRASpec

    rec = RecordingTeacher(teacher)
    cfg = OptimizeConfig(mode="k_step", steps=SAMPLE_STEPS, grad_steps=SAMPLE_STEPS, lr=lr, max_steps=steps,
                         patience=steps + 1, yes_threshold=1.0, decoder=LightDecoderConfig(kind="full"),
                         lora=LoRASpec(rank=rank), score_initial=False, keep_initial_if_better=False,
                         sampling=SamplingConfig(num_frames=NUM_FRAMES, height=SIZE, width=SIZE,
                                                 final_steps=SAMPLE_STEPS, seed=seed),
                         progress=False)
    res = optimize(pipe, rec, instance.prompt, image=instance.first_frame, queries=queries_for(instance), config=cfg)
    videos = torch.cat(rec.frames[:len(res.history)])  # (S, 9, 3, 32, 32); the last call scored the final sample
    return GamingTrace(videos=videos, p_yes=[h.p_yes for h in res.history],
                       scores=[score_video(instance, v) for v in videos])
