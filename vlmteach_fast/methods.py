"""The one place that knows which methods exist and how each is called: ``vlmteach-fast solve``, the benchmark
runner and the demo all go through ``run_method``.

    result = run_method("best_of_n", pipe, teacher, prompt, image=img, config=OptimizeConfig(), n=5)
    result.frames, result.p_yes, result.cost, result.save("out/")

Every method returns an object with the ``MethodOutput`` protocol (``OptimizeResult`` or ``MethodResult``).
``optimize`` uses the whole ``OptimizeConfig``; the others use its ``sampling`` and ``lora`` (same instance setup,
same LoRA-wrapped model, so their costs and videos are comparable). The sanity methods make their videos from the
first frame and the benchmark's ground truth, without a video model (``sanity.py``). ``best_of_n_oracle`` is a
reference too, not a method: Best-of-N whose pick is made by the benchmark's own score (pass@k), only run when asked
for by name and reported apart from the methods.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, runtime_checkable

import torch

from .checks import check_int
from .cost import CostRecord

__all__ = ["METHODS", "MODEL_METHODS", "SANITY_METHODS", "REFERENCE_METHODS", "METHOD_OPTIONS", "MethodOutput",
           "run_method"]

MODEL_METHODS = ("optimize", "best_of_n", "vlm_as_solver", "baseline")
# reference videos made without a video model (sanity.py): what a benchmark's scorer gives doing nothing, a cut to
# the answer, and the answer itself
SANITY_METHODS = ("static", "end_state", "ground_truth")
# upper references that peek at the benchmark's score: Best-of-N picked by that score (pass@k over its N candidates)
REFERENCE_METHODS = ("best_of_n_oracle",)
METHODS = MODEL_METHODS + SANITY_METHODS + REFERENCE_METHODS
# best_of_n's candidates, vlm_as_solver's critique rounds, the teacher's RewardConfig (None: the teacher's own)
METHOD_OPTIONS = {"n": 5, "rounds": 0, "reward": None}


@runtime_checkable
class MethodOutput(Protocol):
    """What every method returns.

    Attributes:
        frames: (1, F, 3, H, W) float32 in [0, 1], the returned video.
        p_yes: P(Yes) per query on the returned video (list of floats).
        cost: ``CostRecord`` of the whole method.
        stop_reason: why ``optimize`` stopped; None for the other methods.
    """

    frames: torch.Tensor
    cost: CostRecord

    @property
    def p_yes(self) -> list[float]: ...

    @property
    def stop_reason(self) -> str | None: ...

    def summary(self) -> dict: ...

    def save(self, out_dir, fps: int = 8) -> dict: ...


def run_method(name: str, pipe, teacher, prompt: str, image=None, queries=None, config=None, *, n: int = 5,
               rounds: int = 0, reward=None, out_dir=None, ground_truth: dict | None = None, select_judge=None,
               oracle_score=None) -> MethodOutput:
    """Run method ``name`` (one of ``METHODS``) on one instance.

    Args:
        name: "optimize", "best_of_n", "vlm_as_solver", "baseline", a sanity method ("static", "end_state",
            "ground_truth": ``sanity.run_sanity``, no video model) or the reference "best_of_n_oracle".
        pipe: a diffusers video pipeline or a ``Reasoner`` (unused by sanity methods: None is fine there).
        teacher: the teacher that writes queries and scores (a ``VLMTeacher`` or any ``Teacher``; ``vlm_as_solver``
            needs one with ``generate_text``; a sanity method takes None: no teacher score).
        prompt: the task prompt.
        image: first frame (PIL image, (3, H, W) float tensor in [0, 1] or a path) for image-to-video pipelines.
        queries: ``Queries``, a list of questions (first = goal), or None (the teacher writes them).
        config: ``OptimizeConfig`` (None: defaults).
        n: Best-of-N's candidates (``best_of_n`` only), int >= 1.
        rounds: VLM-as-solver critique rounds (``vlm_as_solver`` only), int >= 0.
        reward: ``RewardConfig`` fields (a dict) set on the teacher's own config from now on (config files:
            ``reward: {checkpoint_layers: true}``); None keeps it as it is.
        out_dir: ``optimize`` writes its files there as it finishes; the others are saved with ``result.save``.
        ground_truth: the instance's {"final_frame", "video"} (paths or tensors), for ``end_state`` and
            ``ground_truth``; the others ignore it.
        select_judge: Best-of-N's picker when it is not the teacher: a Teacher-like scorer (``best_of_n``'s
            ``judge``); None: the teacher picks. Only ``best_of_n`` takes one.
        oracle_score: ``score(frames (1, F, 3, H, W) float in [0, 1], p_yes list[float]) -> float``, the
            benchmark's score of a video; required by ``best_of_n_oracle`` (its picker), refused elsewhere.
    """
    from .baselines import baseline, best_of_n, best_of_n_oracle, vlm_as_solver
    from .optimization import OptimizeConfig, optimize

    if name not in METHODS:
        raise ValueError(f"`name` must be one of {METHODS}, got {name!r}")
    config = OptimizeConfig() if config is None else config
    if not isinstance(config, OptimizeConfig):
        raise TypeError(f"`config` must be an OptimizeConfig, got {type(config).__name__}")
    check_int("n", n)
    check_int("rounds", rounds, minimum=0)
    if select_judge is not None and name != "best_of_n":
        raise ValueError(f"`select_judge` picks Best-of-N's candidates: only method 'best_of_n' takes one, got "
                         f"{name!r}")
    if name == "best_of_n_oracle" and not callable(oracle_score):
        raise ValueError("`oracle_score` must be the benchmark's score of a video, callable(frames, p_yes) -> float, "
                         f"for 'best_of_n_oracle', got {type(oracle_score).__name__}")
    if oracle_score is not None and name != "best_of_n_oracle":
        raise ValueError(f"`oracle_score` picks by the benchmark's score: only 'best_of_n_oracle' takes one, got "
                         f"method {name!r}")
    if reward is not None and teacher is not None:
        from .teacher import RewardConfig

        if not isinstance(reward, dict) or not isinstance(getattr(teacher, "config", None), RewardConfig):
            raise TypeError(f"`reward` must be a dict of RewardConfig fields for a teacher that has one (a "
                            f"VLMTeacher), got {type(reward).__name__} for {type(teacher).__name__}")
        teacher.config = dataclasses.replace(teacher.config, **reward)
    if name in SANITY_METHODS:
        from .sanity import run_sanity

        return run_sanity(name, teacher, prompt, image=image, queries=queries, sampling=config.sampling,
                          ground_truth=ground_truth)
    if name == "optimize":
        return optimize(pipe, teacher, prompt, image=image, queries=queries, config=config, out_dir=out_dir)
    kw = dict(image=image, queries=queries, sampling=config.sampling, lora=config.lora)
    if name == "best_of_n":
        return best_of_n(pipe, teacher, prompt, n=n, judge=select_judge, **kw)
    if name == "best_of_n_oracle":
        return best_of_n_oracle(pipe, teacher, prompt, oracle_score, n=n, **kw)
    if name == "vlm_as_solver":
        return vlm_as_solver(pipe, teacher, prompt, rounds=rounds, **kw)
    return baseline(pipe, teacher, prompt, **kw)
