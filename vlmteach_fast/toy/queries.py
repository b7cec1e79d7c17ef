"""Deterministic teacher questions for the toy tasks: one goal and three process questions per task type.

Each question mirrors one rule-scorer part (``PART_OF``), so the teacher's answers can be checked against the rule
scorer question by question, and the teacher is trained with the scorer's parts as labels.
"""

from __future__ import annotations

from ..checks import check_int
from ..teacher import Queries
from .tasks import PROMPTS, TASK_TYPES, ToyInstance

__all__ = ["QUESTIONS", "PART_OF", "queries_for", "task_type_of_prompt", "question_words"]

_OBJECT = {"reach": "red ball", "maze": "red ball", "push": "blue block"}
_GOAL_PLACE = {"reach": "green square", "maze": "green square", "push": "yellow mark"}

QUESTIONS: dict[str, dict[str, str]] = {
    t: {
        "goal": f"Is the {_OBJECT[t]} on the {_GOAL_PLACE[t]} in the final frame?",
        "rules": ("Does the red ball move one cell at a time without crossing the gray walls?" if t == "maze" else
                  "Does the blue block move only when the red ball pushes it?" if t == "push" else
                  "Does the red ball move one cell at a time?"),
        "integrity": ("Is there exactly one red ball and one blue block in every frame?" if t == "push" else
                      "Is there exactly one red ball in every frame?"),
        "background": "Does the background stay unchanged?",
    }
    for t in TASK_TYPES
}
# Question key -> rule-scorer part it asks about.
PART_OF = {"goal": "goal", "rules": "rules", "integrity": "integrity", "background": "background"}
_PROCESS_KEYS = ("rules", "integrity", "background")


def task_type_of_prompt(prompt: str) -> str:
    """The task type whose prompt is ``prompt`` (exact match); ValueError otherwise."""
    for t, p in PROMPTS.items():
        if prompt.strip() == p:
            return t
    raise ValueError(f"`prompt` is not a toy-world prompt; expected one of {list(PROMPTS.values())}, got {prompt!r}")


def queries_for(instance_or_task: ToyInstance | str, max_process: int = 3) -> Queries:
    """The goal question and the first ``max_process`` (<= 3) process questions for an instance or task type."""
    task = instance_or_task.task_type if isinstance(instance_or_task, ToyInstance) else instance_or_task
    if task not in QUESTIONS:
        raise ValueError(f"`instance_or_task` must be a ToyInstance or one of {TASK_TYPES}, got {task!r}")
    check_int("max_process", max_process, 0, 3)
    q = QUESTIONS[task]
    return Queries(goal=q["goal"], process=[q[k] for k in _PROCESS_KEYS[:max_process]])


def question_words() -> list[str]:
    """Every word of the questions and prompts (the teacher tokenizer's vocabulary), sorted."""
    import re

    text = " ".join(list(PROMPTS.values()) + [q for d in QUESTIONS.values() for q in d.values()])
    return sorted(set(re.findall(r"[A-Za-z]+", text)))
