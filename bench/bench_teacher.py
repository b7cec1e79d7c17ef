"""Batched vs per-question VQA reward, forward + backward, on a small Qwen2-VL config (CPU-friendly).

    python -m pytest bench/bench_teacher.py --benchmark-only -q

mode=batched: one `log_probs` call for all questions (one vision pass, shared visual prefix, one batched suffix pass).
mode=batched_rows: one call, one vision pass, but a full left-padded row per question (share_prefix=False).
mode=loop: one call per question (a vision pass and a full prompt per question), the naive implementation.
All questions are process questions, so every question sees the same 8 frames (one frame view).
extra_info records the vision-tower calls per reward evaluation and the LM forward calls.
"""

import pytest
import torch

from vlmteach_fast.teacher import RewardConfig, VLMTeacher
from vlmteach_fast.testing import make_qwen_vl

FRAMES = 8
QUESTIONS = [
    "Does the red ball reach the green square?",
    "Does the ball stay intact?",
    "Does the ball move through walls?",
    "Is the red ball on the square at the end?",
    "Does the green square stay in the frame?",
    "Does the ball stay red?",
    "Does the ball overlap the square at the end?",
    "Is the ball without disappearing in the video?",
]


@pytest.fixture(scope="module")
def teacher():
    # "Small", not "tiny": 4-layer vision tower (width 128) and 4-layer LM (width 128), 112x112 frames
    # -> 16 visual tokens per frame, 128 per 8-frame view, ~20 text tokens per question.
    torch.manual_seed(0)
    model, tok = make_qwen_vl("qwen2_vl", text_layers=4, vision_depth=4, width=128)
    return VLMTeacher(model, tok, RewardConfig(max_pixels=112 * 112, process_frames=FRAMES))


def _step(teacher, frames, questions, batched):
    frames.grad = None
    if batched:  # share_prefix decides between "batched" and "batched_rows"
        lp, _ = teacher.log_probs(frames, questions, ["process"] * len(questions))
    else:
        lp = torch.cat([teacher.log_probs(frames, [q], ["process"])[0] for q in questions], dim=1)
    lp.sum().backward()
    return lp


@pytest.mark.parametrize("mode", ["batched", "batched_rows", "loop"])
@pytest.mark.parametrize("num_questions", [1, 2, 4, 8])
def test_reward_fwd_bwd(benchmark, teacher, num_questions, mode):
    # One thread: the dev machine's 2 cores are shared with other jobs, and 2 OpenMP threads there made single rounds
    # swing from 0.26 s to 7 s (spinning threads losing their core); 1 thread kept rounds within ~2x.
    torch.set_num_threads(1)
    frames = torch.rand(1, FRAMES, 3, 112, 112, requires_grad=True)
    questions = QUESTIONS[:num_questions]
    batched = mode != "loop"
    teacher.config.share_prefix = mode != "batched_rows"
    calls = []
    hook = teacher.family.vision_module.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        _step(teacher, frames, questions, batched)
        vision_calls = len(calls)
        benchmark.pedantic(_step, args=(teacher, frames, questions, batched), rounds=7, warmup_rounds=1)
    finally:
        hook.remove()
        teacher.config.share_prefix = True
    benchmark.extra_info.update(
        mode=mode, questions=num_questions, frames=FRAMES, vision_calls_per_reward=vision_calls,
        device="cpu", threads=torch.get_num_threads(),
    )
    assert vision_calls == (1 if batched else num_questions)
    assert frames.grad is not None


@pytest.mark.parametrize("mode", ["batched", "loop"])
def test_reward_fwd_bwd_goal_plus_process(benchmark, teacher, mode):
    """The method's usual query set: 1 goal question (last frame) + 3 process questions (8 frames): two frame views."""
    torch.set_num_threads(1)
    frames = torch.rand(1, FRAMES, 3, 112, 112, requires_grad=True)
    questions, kinds = QUESTIONS[:4], ["goal", "process", "process", "process"]

    def step():
        frames.grad = None
        if mode == "batched":
            lp, _ = teacher.log_probs(frames, questions, kinds)
        else:
            lp = torch.cat([teacher.log_probs(frames, [q], [k])[0] for q, k in zip(questions, kinds)], dim=1)
        lp.sum().backward()

    calls = []
    hook = teacher.family.vision_module.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        step()
        vision_calls = len(calls)
        benchmark.pedantic(step, rounds=7, warmup_rounds=1)
    finally:
        hook.remove()
    benchmark.extra_info.update(mode=mode, questions=4, frames=FRAMES, vision_calls_per_reward=vision_calls,
                                query_set="1 goal + 3 process", device="cpu", threads=torch.get_num_threads())
    assert vision_calls == (1 if mode == "batched" else 4)
