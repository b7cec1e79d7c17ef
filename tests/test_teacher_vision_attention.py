"""The Qwen-VL vision towers' window attention in one call per layer (teacher/vision_attention.py): the same features
and gradients as transformers' per-window loop, and far fewer attention calls."""

import pytest
import torch

from vlmteach_fast.teacher.vision_attention import batch_windows
from vlmteach_fast.testing.vlm import make_qwen_vl

GRID = torch.tensor([[1, 10, 14], [1, 10, 14]])  # two images whose sides are not multiples of the window


def _features(visual, pixels):
    out = visual(pixels, grid_thw=GRID)
    feats = out.pooler_output if torch.is_tensor(getattr(out, "pooler_output", None)) else out.last_hidden_state
    grad, = torch.autograd.grad(feats.square().sum(), pixels)
    return feats.detach(), grad


def _sdpa_calls(visual, pixels) -> int:
    calls = []
    real = torch.nn.functional.scaled_dot_product_attention

    def counting(*a, **k):
        calls.append(1)
        return real(*a, **k)

    torch.nn.functional.scaled_dot_product_attention = counting
    try:
        visual(pixels, grid_thw=GRID)
    finally:
        torch.nn.functional.scaled_dot_product_attention = real
    return len(calls)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_batched_windows_match_the_loop(family):
    model, _ = make_qwen_vl(family)
    visual = model.model.visual  # as built: transformers' own forward (the teacher family is not involved)
    cfg = visual.config
    torch.manual_seed(0)
    pixels = torch.randn(int(GRID.prod(-1).sum()), 3 * cfg.temporal_patch_size * cfg.patch_size ** 2,
                         requires_grad=True)
    ref, ref_grad = _features(visual, pixels)
    loop_calls = _sdpa_calls(visual, pixels)
    assert batch_windows(visual) == cfg.depth
    feats, grad = _features(visual, pixels)
    torch.testing.assert_close(feats, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-5)
    assert _sdpa_calls(visual, pixels) == cfg.depth < loop_calls  # one call per layer


def test_the_teacher_runs_batched_windows():
    from vlmteach_fast.teacher import VLMTeacher

    model, tok = make_qwen_vl("qwen2_5_vl")
    teacher = VLMTeacher(model, tok)
    attn = [m for m in teacher.model.modules() if type(m).__name__.endswith("VisionAttention")]
    assert attn and all(m.forward.__func__.__name__ == "batched_window_attention" for m in attn)
