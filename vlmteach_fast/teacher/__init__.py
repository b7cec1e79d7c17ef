"""VLM teacher: query synthesis and a batched, differentiable VQA reward (DESIGN.md, issue 4)."""

from .base import Queries, RewardOutput, Teacher, WeightedTeachers, as_queries, check_frames
from .queries import QueryCache, parse_queries, queries_from_checklist
from .vlm import RewardConfig, VLMTeacher, resolve_answer_token, supported_model_types

__all__ = [
    "Queries",
    "QueryCache",
    "RewardConfig",
    "RewardOutput",
    "Teacher",
    "VLMTeacher",
    "WeightedTeachers",
    "as_queries",
    "check_frames",
    "parse_queries",
    "queries_from_checklist",
    "resolve_answer_token",
    "supported_model_types",
]
