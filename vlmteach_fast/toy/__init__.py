"""The built-in demo world: symbolic video-reasoning tasks, rule scorers and tiny trained models.

Public API:
- tasks: ``make_instances(n, seed=0, task_types=TASK_TYPES, split="test", difficulty=None)`` (held-out by default),
  ``make_instance(task_type, seed, difficulty=None)``, ``ToyInstance``, ``physics_video``, ``TASK_TYPES``;
- scoring: ``score_video(instance, video) -> RuleScore`` (``score``, ``parts``, ``passed``), ``score_videos``,
  ``ScoreWeights``; ``corrupt(instance, kind)`` / ``applicable_corruptions`` for broken videos;
- models (offline, shipped as safetensors under ``toy/weights``): ``load_pipeline()`` -> diffusers
  ``WanImageToVideoPipeline`` (TI2V form; use 9 frames at 32x32 and ``SAMPLE_STEPS`` steps), ``load_teacher()`` ->
  ``ToyTeacher`` (a ``VLMTeacher`` over a tiny Qwen2-VL); ``queries_for(instance)`` gives the goal and process
  questions (``ToyTeacher.synthesize_queries(prompt)`` returns the same).
Geometry: ``SIZE`` = 32 px, ``NUM_FRAMES`` = 9.
"""

from .corrupt import BREAKS, CORRUPTIONS, applicable_corruptions, corrupt
from .models import SAMPLE_STEPS, load_pipeline
from .queries import QUESTIONS, queries_for
from .scorers import RuleScore, ScoreWeights, score_video, score_videos
from .tasks import DIFFICULTIES, PROMPTS, TASK_TYPES, ToyInstance, make_instance, make_instances, physics_video
from .teacher import ToyTeacher, load_teacher, teacher_reward_config
from .world import NUM_FRAMES, SIZE

__all__ = [
    "make_instances", "make_instance", "ToyInstance", "physics_video", "TASK_TYPES", "DIFFICULTIES", "PROMPTS",
    "score_video", "score_videos", "RuleScore", "ScoreWeights", "corrupt", "applicable_corruptions", "CORRUPTIONS",
    "BREAKS", "load_pipeline", "load_teacher", "ToyTeacher", "teacher_reward_config", "queries_for", "QUESTIONS",
    "SAMPLE_STEPS", "NUM_FRAMES", "SIZE",
]
