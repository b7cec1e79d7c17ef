"""VLM teacher: query synthesis and a batched, differentiable VQA reward (docs/method.md).

    teacher = VLMTeacher.from_pretrained("Qwen/Qwen2.5-VL-3B-Instruct", dtype=torch.bfloat16, device="cuda")
    queries = teacher.synthesize_queries(prompt, first_frame)        # Queries(goal, process)
    out = teacher.reward(frames, queries)                             # frames (B, F, 3, H, W) in [0, 1]
    (-out.reward.mean()).backward()                                   # gradient reaches the frames only
"""

from .base import EnsembleTeacher, Queries, RewardOutput, Teacher, WeightedTeachers, as_queries, check_frames
from .family import VLMFamily
from .idefics3 import Idefics3Family
from .llava import LlavaFamily
from .queries import QueryCache, parse_queries, queries_from_checklist
from .qwen_vl import QwenVLFamily
from .vlm import RewardConfig, VLMTeacher, resolve_answer_token, supported_model_types

__all__ = [
    "EnsembleTeacher",
    "Idefics3Family",
    "LlavaFamily",
    "Queries",
    "QueryCache",
    "QwenVLFamily",
    "RewardConfig",
    "RewardOutput",
    "Teacher",
    "VLMFamily",
    "VLMTeacher",
    "WeightedTeachers",
    "as_queries",
    "check_frames",
    "parse_queries",
    "queries_from_checklist",
    "resolve_answer_token",
    "supported_model_types",
]
