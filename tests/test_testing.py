"""The public test helpers: deterministic tiny models, and an oracle teacher whose answers are known."""

import pytest
import torch

from vlmteach_fast.testing import BrightnessTeacher, make_llava, tiny_wan_transformer


def test_tiny_models_are_deterministic_and_in_eval_mode():
    a, b = tiny_wan_transformer(), tiny_wan_transformer()
    assert not a.training and all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(tiny_wan_transformer(seed=1).parameters()), next(a.parameters()))
    model, tok = make_llava()
    assert not model.training and tok.convert_tokens_to_ids("<image>") == model.config.image_token_id


def test_brightness_teacher_is_an_oracle():
    teacher = BrightnessTeacher()
    queries = teacher.synthesize_queries("make it bright")
    white, black = torch.ones(1, 5, 3, 8, 8), torch.zeros(1, 5, 3, 8, 8)
    assert min(teacher.reward(white, queries).p_yes) > 0.95 and max(teacher.reward(black, queries).p_yes) < 0.05
    frames = torch.full((1, 5, 3, 8, 8), 0.4, requires_grad=True)
    teacher.reward(frames, queries).reward.sum().backward()
    assert (frames.grad > 0).all()  # brighter is better everywhere: a differentiable reward
    nan_teacher = BrightnessTeacher(nan_at=(1,))
    assert not torch.isnan(nan_teacher.reward(white, queries).reward).any()
    assert torch.isnan(nan_teacher.reward(white, queries).reward).all() and nan_teacher.calls == 2


@pytest.mark.parametrize("variant,cls", [("t2v", "WanPipeline"), ("i2v", "WanImageToVideoPipeline")])
def test_tiny_pipelines_build_offline(variant, cls):
    from vlmteach_fast.testing import tiny_wan_pipeline

    pipe = tiny_wan_pipeline(variant)
    assert type(pipe).__name__ == cls and pipe.transformer.config.num_layers == 2
