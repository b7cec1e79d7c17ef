"""The alternatives ``optimize`` is judged against, with the same teacher, the same instance setup and the same cost
record: ``baseline`` (one plain sample), ``best_of_n`` (N seeds, a VLM picks: the teacher, or a separate judge model)
and ``vlm_as_solver`` (the teacher writes a refined prompt / plan, the video model samples once; optional critique
rounds). ``best_of_n_oracle`` is no method: it picks among the same N candidates by the benchmark's own score, an
upper reference (pass@k) of what any picker could get from those N samples."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .checks import check_int
from .cost import CostMeter, CostRecord
from .instance import SamplingConfig, score_frames, setup_instance
from .reasoner import LoRASpec
from .teacher import Queries

__all__ = ["MethodResult", "baseline", "best_of_n", "best_of_n_oracle", "vlm_as_solver"]

SOLVER_INSTRUCTION = (
    "A video generation model must make a video that solves this task, starting from the shown first frame.\n"
    "Task: {prompt}\n"
    "Write one short paragraph that describes exactly what must happen in the video, step by step, so that the task "
    "is solved and no rule is broken. Only the description."
)
CRITIQUE_INSTRUCTION = (
    "Task: {prompt}\nThe shown image is the last frame of a video made from this description:\n{plan}\n"
    "If the task is not solved, rewrite the description so the video solves it. Only the description."
)
MAX_PLAN_CHARS = 600  # long plans push the task prompt out of the text encoder's window; 600 chars ~ 150 tokens


@dataclass
class MethodResult:
    """What a baseline returns.

    Attributes:
        method: "baseline", "best_of_n", "vlm_as_solver", "best_of_n_oracle", or a sanity method (``sanity.py``).
        frames: (1, F, 3, H, W) float32 in [0, 1], the returned video.
        queries: the questions the teacher scored with (None: no teacher scored, a sanity method's option).
        p_yes: P(Yes) per query on the returned video.
        cost: ``CostRecord`` of the whole method.
        candidates: per candidate {"seed", "prompt", "p_yes", "reward"}, best first (the ranking).
        prompt: the prompt the returned video was sampled with.
        geometry: how the first frame was brought to the video's size (``instance.prepare_first_frame``).
        selected_by: who picked the returned video among candidates: "teacher", "judge" (a separate VLM,
            ``best_of_n(judge=...)``), "oracle" (the benchmark's score, ``best_of_n_oracle``); None: nothing picked.
    """

    method: str
    frames: torch.Tensor
    queries: Queries | None
    p_yes: list[float]
    cost: CostRecord
    candidates: list[dict] = field(default_factory=list)
    prompt: str = ""
    geometry: dict = field(default_factory=dict)
    selected_by: str | None = None

    @property
    def stop_reason(self) -> None:
        """Only ``optimize`` stops early; None here (the ``MethodOutput`` protocol)."""
        return None

    def summary(self) -> dict:
        questions = [] if self.queries is None else self.queries.questions
        return {"method": self.method, "questions": questions, "p_yes": self.p_yes,
                "prompt": self.prompt, "candidates": self.candidates, "cost": self.cost.to_dict(),
                "geometry": self.geometry, "selected_by": self.selected_by}

    def save(self, out_dir, fps: int = 8) -> dict:
        """video.mp4, video.gif, result.json (atomically)."""
        from .outputs import save_frames_result

        return save_frames_result(self.frames, self.summary(), out_dir, fps=fps)


def _candidate(setup, teacher, meter, prompt: str, seed_offset: int, prepared=None):
    reasoner = setup.reasoner
    if prepared is None:  # a new seed: its noise only, where the family allows (conditions encoded once)
        prepared = reasoner.reseed(setup.prepared, setup.sampling.seed + seed_offset)
    if prepared is None:
        s = setup.sampling
        prepared = reasoner.prepare(prompt, setup.image, s.negative_prompt, num_frames=s.num_frames,
                                    height=setup.prepared.height, width=setup.prepared.width,
                                    seed=s.seed + seed_offset, guidance_scale=s.guidance_scale,
                                    max_sequence_length=s.max_sequence_length)
    with reasoner.lora_bypassed():  # the plain model, at a plain pipeline's cost
        frames = reasoner.sample(prepared, steps=setup.sampling.final_steps).frames
    out, p_yes = score_frames(teacher, frames, setup.queries, meter)
    info = {"seed": prepared.seed, "prompt": prompt, "p_yes": p_yes, "reward": float(out.reward.mean())}
    return frames, info


def _setup(pipe, teacher, prompt, image, queries, sampling, lora):
    setup = setup_instance(pipe, teacher, prompt, image, queries, sampling, lora)
    setup.reasoner.reset_lora()  # the plain model: lora_B = 0
    meter = CostMeter(setup.reasoner)
    if queries is None:
        meter.count_generate()
    return setup, meter


def baseline(pipe, teacher, prompt: str, image=None, queries=None, sampling: SamplingConfig | None = None,
             lora: LoRASpec | None = None) -> MethodResult:
    """One plain sample of the frozen model (fresh, zero LoRA), scored by the teacher. Arguments as ``best_of_n``."""
    setup, meter = _setup(pipe, teacher, prompt, image, queries, sampling, lora)
    frames, info = _candidate(setup, teacher, meter, prompt, 0, setup.prepared)
    return MethodResult("baseline", frames, setup.queries, info["p_yes"], meter.finish(), [info], prompt,
                        setup.geometry)


def _check_judge(judge) -> None:
    if judge is not None and not callable(getattr(judge, "reward", None)):
        raise TypeError(f"`judge` must be None (the teacher picks) or a Teacher-like scorer with reward(frames, "
                        f"queries), got {type(judge).__name__}")


def _pick(pipe, teacher, prompt, image, queries, n, sampling, lora, select, selected_by: str) -> MethodResult:
    """Best-of-N's loop, one picker: ``select(frames, info, meter, queries) -> float`` rates a candidate the teacher
    has scored (``info``), higher is better; ties keep the earlier seed."""
    check_int("n", n)
    setup, meter = _setup(pipe, teacher, prompt, image, queries, sampling, lora)
    best_frames, best_value, ranking = None, None, []
    for i in range(n):
        frames, info = _candidate(setup, teacher, meter, prompt, i, setup.prepared if i == 0 else None)
        info["selection"] = float(select(frames, info, meter, setup.queries))
        ranking.append(info)
        if best_value is None or info["selection"] > best_value:
            best_frames, best_value = frames, info["selection"]
    ranking.sort(key=lambda r: -r["selection"])  # stable: ties keep seed order, as the pick did
    return MethodResult("best_of_n", best_frames, setup.queries, ranking[0]["p_yes"], meter.finish(), ranking, prompt,
                        setup.geometry, selected_by)


def best_of_n(pipe, teacher, prompt: str, image=None, queries=None, n: int = 5,
              sampling: SamplingConfig | None = None, lora: LoRASpec | None = None, judge=None) -> MethodResult:
    """Sample ``n`` videos (seeds ``sampling.seed + i``), score each on the full decode, keep the one the selecting
    VLM likes best: the teacher, or ``judge`` when given (the published Best-of-N anchors pick with a VLM judge that
    need not be the model ``optimize`` trains against).

    Args:
        pipe: a supported diffusers pipeline or a ``Reasoner`` (its LoRA is reset to zero: the plain model).
        teacher: a ``Teacher``; writes the queries when none are given, and scores every candidate (the returned
            ``p_yes``).
        prompt: task prompt. image: first frame for image-to-video pipelines (PIL / (3, H, W) in [0, 1] / path).
        queries: given questions, or None to let the teacher write them.
        n: candidates (>= 1).
        sampling: geometry, base seed, final steps.
        judge: None (the teacher picks) or a Teacher-like scorer (``reward(frames (1, F, 3, H, W) float in [0, 1],
            queries) -> RewardOutput``) asked the same queries; it only picks: its reward calls are counted apart
            (``CostRecord.judge_reward_calls``) and its values stored per candidate (``judge_p_yes``,
            ``judge_reward``).
    Returns:
        ``MethodResult`` whose ``candidates`` is the ranking (best first by ``selection``, the picker's reward) and
        whose ``selected_by`` is "teacher" or "judge".
    """
    _check_judge(judge)
    if judge is None:
        return _pick(pipe, teacher, prompt, image, queries, n, sampling, lora,
                     lambda frames, info, meter, queries: info["reward"], "teacher")

    def by_judge(frames, info, meter, queries):
        out, p_yes = score_frames(judge, frames, queries)
        meter.count_judge_reward()
        info.update(judge_p_yes=p_yes, judge_reward=float(out.reward.mean()))
        return info["judge_reward"]

    return _pick(pipe, teacher, prompt, image, queries, n, sampling, lora, by_judge, "judge")


def best_of_n_oracle(pipe, teacher, prompt: str, score, image=None, queries=None, n: int = 5,
                     sampling: SamplingConfig | None = None, lora: LoRASpec | None = None) -> MethodResult:
    """Best-of-N whose pick is made by the benchmark's own score: an oracle no deployed method has, so its row is an
    upper reference (pass@k over the same ``n`` candidates), never a competitor. Arguments as ``best_of_n``, plus:

    Args:
        score: ``score(frames (1, F, 3, H, W) float32 in [0, 1], p_yes list[float]) -> float``, higher is better
            (the bench runner passes the score it records for a video). Its calls are counted in the cost record's
            ``extra["oracle_score_calls"]``.
    Returns:
        ``MethodResult`` with ``method`` "best_of_n_oracle" and ``selected_by`` "oracle"; each candidate's
        ``selection`` is its score.
    """
    if not callable(score):
        raise TypeError(f"`score` must be callable(frames, p_yes) -> float, got {type(score).__name__}")

    def by_score(frames, info, meter, queries):
        meter.record.extra["oracle_score_calls"] = meter.record.extra.get("oracle_score_calls", 0) + 1
        return score(frames, info["p_yes"])

    res = _pick(pipe, teacher, prompt, image, queries, n, sampling, lora, by_score, "oracle")
    res.method = "best_of_n_oracle"
    return res


def _generate(teacher, instruction: str, image, max_new_tokens: int, meter: CostMeter) -> str:
    """Text from the teacher's VLM (``VLMTeacher.generate_text``), counted on ``meter``."""
    if not callable(getattr(teacher, "generate_text", None)):
        raise TypeError(f"vlm_as_solver needs a teacher that can write text (a VLMTeacher), got {type(teacher).__name__}")
    text = teacher.generate_text(instruction, image, max_new_tokens=max_new_tokens)
    meter.count_generate()
    return text


def _refined(prompt: str, plan: str) -> str:
    plan = " ".join(plan.split())[:MAX_PLAN_CHARS]
    return f"{prompt.strip()} {plan}".strip() if plan else prompt


def vlm_as_solver(pipe, teacher, prompt: str, image=None, queries=None, rounds: int = 0, max_new_tokens: int = 120,
                  sampling: SamplingConfig | None = None, lora: LoRASpec | None = None) -> MethodResult:
    """The teacher solves the task in text (a plan appended to the prompt); the video model samples once per round.

    Args:
        rounds: critique rounds after the first sample: the teacher sees the last frame and rewrites the plan; the
            best-scoring round is returned. Other arguments as ``best_of_n``.
        max_new_tokens: length cap of each plan.
    """
    check_int("rounds", rounds, minimum=0)
    setup, meter = _setup(pipe, teacher, prompt, image, queries, sampling, lora)
    plan = _generate(teacher, SOLVER_INSTRUCTION.format(prompt=prompt), setup.first_frame, max_new_tokens, meter)
    tried = []
    for r in range(rounds + 1):
        refined = _refined(prompt, plan)
        frames, info = _candidate(setup, teacher, meter, refined, 0)
        tried.append((info, frames))
        if r < rounds:
            last = frames[0, -1].detach().float().cpu()
            plan = _generate(teacher, CRITIQUE_INSTRUCTION.format(prompt=prompt, plan=plan), last, max_new_tokens,
                             meter)
    tried.sort(key=lambda t: -t[0]["reward"])
    best_info, best_frames = tried[0]
    return MethodResult("vlm_as_solver", best_frames, setup.queries, best_info["p_yes"], meter.finish(),
                        [t[0] for t in tried], best_info["prompt"], setup.geometry)
