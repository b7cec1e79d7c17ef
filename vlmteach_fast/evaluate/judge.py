"""Checklist judging in the manner of RULER-Bench: each checklist question gets a label Good / Medium / Poor (2 / 1 /
0); labels are averaged within a metric, the metric means are averaged, and the result is multiplied by 50 (0..100).

NOT the benchmark's official judge. RULER-Bench's published numbers come from its own (large, API) judge model and
prompt; here a local VLM answers each question and its P("Yes") is mapped to a label by fixed thresholds. Scores are
comparable between methods judged by the same local model, not with published RULER-Bench numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch

__all__ = ["LABEL_POINTS", "checklist_score", "ChecklistJudge", "VLMChecklistJudge"]

LABEL_POINTS = {"Good": 2, "Medium": 1, "Poor": 0}


def checklist_score(labelled: list[tuple[str, str]]) -> tuple[float, dict[str, float]]:
    """RULER-style score of ``[(metric, label)]``: (score in [0, 100], {metric: mean points in [0, 2]}).

    Each metric counts once whatever its number of questions (mean within a metric, then across metrics).
    """
    if not labelled:
        raise ValueError("`labelled` must hold at least one (metric, label) pair")
    per_metric: dict[str, list[int]] = {}
    for metric, label in labelled:
        if label not in LABEL_POINTS:
            raise ValueError(f"label must be one of {list(LABEL_POINTS)}, got {label!r} (metric {metric!r})")
        per_metric.setdefault(metric, []).append(LABEL_POINTS[label])
    means = {m: sum(v) / len(v) for m, v in per_metric.items()}
    return 50.0 * sum(means.values()) / len(means), means


class ChecklistJudge:
    """Protocol: ``label(frames (1, F, 3, H, W) float in [0, 1], prompt, questions) -> ["Good"|"Medium"|"Poor"]``.

    Any object with this method can be passed as a judge (``--judge py:module:factory`` on the command line).
    """

    name = "judge"

    def label(self, frames: torch.Tensor, prompt: str, questions: list[str]) -> list[str]:
        raise NotImplementedError


@dataclass
class VLMChecklistJudge(ChecklistJudge):
    """A local VLM (anything with the Teacher protocol's ``reward``) as judge: P("Yes") >= ``good`` -> Good,
    >= ``medium`` -> Medium, else Poor. Thirds of [0, 1] by default: an unsure 0.5 is Medium."""

    teacher: object
    good: float = 2 / 3
    medium: float = 1 / 3
    name: str = "vlm-checklist (local, unofficial)"

    def __post_init__(self):
        if not hasattr(self.teacher, "reward"):
            raise TypeError(f"`teacher` must have a reward() method, got {type(self.teacher).__name__}")
        if not 0.0 <= self.medium <= self.good <= 1.0:
            raise ValueError(f"thresholds must satisfy 0 <= medium <= good <= 1, got medium={self.medium}, "
                             f"good={self.good}")

    @property
    def prompt_text(self) -> str:
        """What the judge model is asked besides the checklist questions, as text (the reports hash it): the
        question suffix, the answer form, the system prompt and the label thresholds."""
        config = getattr(self.teacher, "config", None)
        return json.dumps({"question_suffix": getattr(config, "question_suffix", None),
                           "answer_form": getattr(config, "answer_form", None),
                           "system": getattr(getattr(self.teacher, "family", None), "system", None),
                           "good": self.good, "medium": self.medium, "teacher": type(self.teacher).__qualname__},
                          sort_keys=True)

    def label(self, frames, prompt, questions):
        from ..teacher import Queries

        if not questions:
            return []
        with torch.no_grad():
            out = self.teacher.reward(frames, Queries(goal=questions[0], process=list(questions[1:])))
        return ["Good" if p >= self.good else "Medium" if p >= self.medium else "Poor" for p in out.p_yes]
