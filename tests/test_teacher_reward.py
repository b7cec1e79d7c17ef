"""Batched differentiable VQA reward on tiny random Qwen2-VL / Qwen2.5-VL / Qwen3-VL models."""

import pytest
import torch

from vlmteach_fast.testing import (
    make_idefics3,
    make_idefics_image_processor,
    make_llava,
    make_llava_image_processor,
    make_qwen_tokenizer,
    make_qwen_vl,
)
from vlmteach_fast.teacher import Queries, RewardConfig, RewardOutput, Teacher, VLMTeacher, WeightedTeachers

FAMILIES = ["qwen2_vl", "qwen2_5_vl", "qwen3_vl", "idefics3", "smolvlm", "llava"]
QUERIES = Queries(
    goal="Does the red ball reach the green square?",
    process=["Does the ball stay intact?", "Is the red ball on the square at the end of the video?"],
)
# fp32 throughout: batched vs looped scoring reorders the same sums (padding, cache concat, SDPA tiling), measured
# max difference 9.5e-7 on log-probs of magnitude ~6; 1e-5 is the target bound and 10x that.
TOL = 1e-5


@pytest.fixture(scope="module", params=FAMILIES)
def teacher(request):
    if request.param in ("idefics3", "smolvlm"):
        model, tok = make_idefics3(request.param)
        return VLMTeacher(model, (tok, make_idefics_image_processor()), RewardConfig(process_frames=3))
    if request.param == "llava":
        model, tok = make_llava()
        return VLMTeacher(model, (tok, make_llava_image_processor()), RewardConfig(process_frames=3))
    model, tok = make_qwen_vl(request.param)
    return VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, process_frames=3))


def _frames(B=2, F=5, H=50, W=60, grad=False):
    return torch.rand(B, F, 3, H, W, requires_grad=grad)


def _hf_reference(teacher, frames, queries):
    """Per question and video: the stock HF forward on the full prompt (pixel_values in, full logits out)."""
    ad, cfg = teacher.family, teacher.config
    B, F_ = frames.shape[:2]
    out = torch.zeros(B, len(queries))
    for b in range(B):
        for qi, (question, kind) in enumerate(zip(queries.questions, queries.kinds)):
            idx = teacher._views(F_, [kind])[kind]
            pv, grid = ad.preprocess(frames[b, idx], cfg.min_pixels, cfg.max_pixels)
            ids = ad.head_ids()
            for _ in idx:
                ids += ad.image_ids(ad.tokens_per_image(grid))
            ids = torch.tensor([ids + ad.question_ids(question + cfg.question_suffix)])
            if teacher.family.name == "llava":  # pixel_values (images, 3, S, S), 1-D positions
                logits = teacher.model(input_ids=ids, pixel_values=pv).logits[0, -1]
            elif grid is None:  # Idefics3/SmolVLM: pixel_values (batch, images, 3, S, S), 1-D positions
                logits = teacher.model(input_ids=ids, pixel_values=pv[None]).logits[0, -1]
            else:
                logits = teacher.model(
                    input_ids=ids, pixel_values=pv, image_grid_thw=grid,
                    mm_token_type_ids=(ids == ad.image_token_id).int(),
                ).logits[0, -1]
            out[b, qi] = logits.log_softmax(-1)[teacher.yes_id]
    return out


@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_matches_hf_forward(teacher, share_prefix):
    frames = _frames()
    teacher.config.share_prefix = share_prefix
    try:
        with torch.no_grad():
            got = teacher.reward(frames, QUERIES).log_probs
            ref = _hf_reference(teacher, frames, QUERIES)
    finally:
        teacher.config.share_prefix = True
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)
    # The questions and videos must actually be told apart, or the comparison above proves little.
    assert (ref[:, 0] - ref[:, 1]).abs().max() > 1e-2 and (ref[0] - ref[1]).abs().max() > 1e-2


@pytest.mark.parametrize("share_prefix", [True, False])
def test_batched_equals_per_question_loop(teacher, share_prefix):
    frames = _frames()
    teacher.config.share_prefix = share_prefix
    try:
        with torch.no_grad():
            batched = teacher.reward(frames, QUERIES).log_probs
            loop = torch.cat(
                [teacher.log_probs(frames, [q], [k])[0] for q, k in zip(QUERIES.questions, QUERIES.kinds)], dim=1
            )
    finally:
        teacher.config.share_prefix = True
    assert batched.shape == (2, 3)
    torch.testing.assert_close(batched, loop, atol=TOL, rtol=0)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_padding_with_very_different_question_lengths(teacher, share_prefix):
    frames = _frames(B=1)
    long_q = "Does the red ball stay intact and " + "red " * 30 + "?"
    q = Queries("Is it red?", ["Yes?", long_q, "Does the ball move?"])
    teacher.config.share_prefix = share_prefix
    try:
        with torch.no_grad():
            got = teacher.reward(frames, q).log_probs
            ref = _hf_reference(teacher, frames, q)
    finally:
        teacher.config.share_prefix = True
    torch.testing.assert_close(got, ref, atol=TOL, rtol=0)


def test_gradient_reaches_frames_not_params(teacher):
    frames = _frames(grad=True)
    before = frames.detach().clone()
    out = teacher.reward(frames, QUERIES)
    assert torch.equal(frames.detach(), before)  # inputs are not modified in place
    assert isinstance(out, RewardOutput) and out.reward.shape == (2,)
    assert out.reward.requires_grad
    out.reward.sum().backward()
    assert frames.grad is not None and torch.isfinite(frames.grad).all()
    # Goal sees frame 4, process sees frames 0, 2, 4 (of 5): frames 1 and 3 are unseen and get no gradient.
    per_frame = frames.grad.abs().sum(dim=(0, 2, 3, 4))
    assert (per_frame[[0, 2, 4]] > 0).all() and (per_frame[[1, 3]] == 0).all()
    assert all(p.grad is None and not p.requires_grad for p in teacher.model.parameters())
    assert not teacher.model.training


def test_vision_tower_once_and_lm_head_on_answer_positions_only(teacher):
    calls, head_shapes = [], []
    h1 = teacher.family.vision_module.register_forward_hook(lambda m, i, o: calls.append(1))
    h2 = teacher.model.get_output_embeddings().register_forward_hook(lambda m, i, o: head_shapes.append(i[0].shape))
    try:
        with torch.no_grad():
            out = teacher.reward(_frames(B=2), QUERIES)
    finally:
        h1.remove()
        h2.remove()
    assert len(calls) == 1 and out.stats["vision_calls"] == 1
    assert head_shapes == [torch.Size([2, 3, teacher.model.config.text_config.hidden_size])]
    # Goal view: its single question is one full-row pass; process view (2 questions): prefix + batched suffixes.
    assert out.stats["lm_calls"] == 3


def test_weights_and_answer_forms(teacher):
    frames = _frames(B=1)
    with torch.no_grad():
        out = teacher.reward(frames, QUERIES, weights=[2.0, 1.0, 1.0])
        torch.testing.assert_close(out.reward, (out.log_probs * torch.tensor([0.5, 0.25, 0.25])).sum(-1))
        teacher.config.answer_form = "yes_no"
        try:
            yn = teacher.reward(frames, QUERIES).log_probs
        finally:
            teacher.config.answer_form = "log_p_yes"
    # log P(yes | yes or no) > log P(yes) over the full vocabulary, and still a log-probability.
    assert (yn > out.log_probs).all() and (yn < 0).all()


def test_goal_and_process_frame_views():
    model, tok = make_qwen_vl("qwen2_vl", text_layers=1, vision_depth=1)
    teacher = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, goal_frames=2, process_frames=4))
    frames = _frames(B=1, F=8, grad=True)
    teacher.reward(frames, Queries("Is it red?")).reward.sum().backward()
    seen = (frames.grad.abs().sum(dim=(0, 2, 3, 4)) > 0).nonzero().flatten().tolist()
    assert seen == [6, 7]  # a goal-only query looks only at the last goal_frames frames


@pytest.mark.parametrize("family", ["qwen3_vl", "llava"])
def test_bf16_model(family):
    model, tok = make_llava() if family == "llava" else make_qwen_vl(family, text_layers=1, vision_depth=1)
    teacher = VLMTeacher(model.to(torch.bfloat16), tok, RewardConfig(max_pixels=56 * 56))
    frames = _frames(B=1, grad=True)
    out = teacher.reward(frames, QUERIES)
    out.reward.sum().backward()
    assert out.log_probs.dtype == torch.float32 and torch.isfinite(out.log_probs).all()
    assert torch.isfinite(frames.grad).all() and frames.grad.abs().sum() > 0


def test_bf16_frames_accepted():
    model, tok = make_qwen_vl("qwen2_vl", text_layers=1, vision_depth=1)
    teacher = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56))
    frames = _frames(B=1).to(torch.bfloat16).requires_grad_(True)
    out = teacher.reward(frames, ["Is it red?"])
    out.reward.sum().backward()
    assert frames.grad.dtype == torch.bfloat16 and frames.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "frames,queries,err,match",
    [
        (torch.rand(2, 3, 28, 28), ["Is it red?"], ValueError, r"\(B, F, 3, H, W\)"),
        (torch.rand(1, 2, 4, 28, 28), ["Is it red?"], ValueError, "3 \\(RGB\\) channels"),
        (torch.rand(1, 2, 3, 28, 28) * 255, ["Is it red?"], ValueError, "values in \\[0, 1\\]"),
        (torch.rand(1, 2, 3, 28, 28) * 2 - 1, ["Is it red?"], ValueError, "values in \\[0, 1\\]"),
        (torch.full((1, 2, 3, 28, 28), float("nan")), ["Is it red?"], ValueError, "NaN / inf value.*video model"),
        ((torch.rand(1, 2, 3, 28, 28) * 255).to(torch.uint8), ["Is it red?"], TypeError, "floating"),
        (torch.rand(1, 2, 3, 28, 28).numpy(), ["Is it red?"], TypeError, "torch.Tensor"),
        (torch.rand(1, 2, 3, 28, 28), [], ValueError, "at least one question"),
        (torch.rand(1, 2, 3, 28, 28), [""], ValueError, "non-empty"),
        (torch.rand(1, 2, 3, 28, 28), "Is it red?", TypeError, "queries must be"),
    ],
)
def test_bad_inputs(frames, queries, err, match):
    model, tok = _small()
    teacher = VLMTeacher(model, tok)
    with pytest.raises(err, match=match):
        teacher.reward(frames, queries)


def _small():
    return make_qwen_vl("qwen2_vl", text_layers=1, vision_depth=1)


def test_bad_weights_and_config():
    with pytest.raises(ValueError, match="one weight per question"):
        Queries("Is it red?", ["Is it round?"], weights=[1.0])
    with pytest.raises(ValueError, match=">= 0"):
        Queries("Is it red?", weights=[-1.0])
    with pytest.raises(ValueError, match="goal_frames"):
        RewardConfig(goal_frames=0)
    with pytest.raises(ValueError, match="answer_form"):
        RewardConfig(answer_form="prob")
    with pytest.raises(ValueError, match="min_pixels"):
        RewardConfig(min_pixels=100, max_pixels=10)


def test_unsupported_family_lists_supported():
    from transformers import LlamaConfig, LlamaForCausalLM

    model = LlamaForCausalLM(LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1))
    with pytest.raises(ValueError, match=r"unsupported VLM family 'llama'.*qwen2_5_vl.*qwen2_vl.*qwen3_vl"):
        VLMTeacher(model, make_qwen_tokenizer())


def test_tokenizer_without_yes_token():
    model, _ = _small()
    with pytest.raises(ValueError, match="single-token spelling of the answer"):
        VLMTeacher(model, make_qwen_tokenizer(with_yes=False))


def test_processor_forms():
    model, tok = _small()
    with pytest.raises(TypeError, match="processor must be"):
        VLMTeacher(model, object())

    class Proc:  # what a full Qwen2VLProcessor exposes (it cannot be built here without torchvision)
        tokenizer = tok
        image_processor = None

    assert VLMTeacher(model, Proc()).tokenizer is tok


class _MeanBrightness:
    """A hand-written differentiable rule teacher: rewards bright last frames."""

    def synthesize_queries(self, prompt, first_frame=None, max_process=3):
        return Queries("Is the last frame bright?")

    def reward(self, frames, queries, **kwargs):
        r = frames[:, -1].mean(dim=(1, 2, 3))
        return RewardOutput(reward=r, log_probs=r[:, None], weights=torch.ones(1), questions=["bright"],
                            kinds=["goal"])


def test_weighted_teachers_sum():
    model, tok = _small()
    vlm = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56))
    rule = _MeanBrightness()
    assert isinstance(vlm, Teacher) and isinstance(rule, Teacher)
    both = WeightedTeachers([vlm, rule], weights=[0.5, 2.0])
    frames = _frames(B=2, grad=True)
    out = both.reward(frames, QUERIES)
    with torch.no_grad():
        expected = 0.5 * vlm.reward(frames, QUERIES).reward + 2.0 * rule.reward(frames, QUERIES).reward
    torch.testing.assert_close(out.reward.detach(), expected, atol=TOL, rtol=0)
    assert out.log_probs.shape == (2, 4) and len(out.questions) == 4
    out.reward.sum().backward()
    assert frames.grad.abs().sum() > 0
    from vlmteach_fast.toy.gaming import RecordingTeacher  # passes keyword arguments through to any teacher
    recorded = RecordingTeacher(both).reward(frames, QUERIES)
    torch.testing.assert_close(recorded.reward.detach(), out.reward.detach(), atol=TOL, rtol=0)
    with pytest.raises(ValueError, match="one per teacher"):
        WeightedTeachers([vlm, rule], weights=[1.0])
    with pytest.raises(TypeError, match=r"teachers\[1\]"):
        WeightedTeachers([vlm, object()])


@pytest.mark.parametrize("reduce", ["mean", "min"])
def test_ensemble_teacher_combines_members_per_question(reduce):
    from vlmteach_fast.teacher import EnsembleTeacher
    from vlmteach_fast.testing import BrightnessTeacher

    soft, sharp = BrightnessTeacher(sharpness=2.0), BrightnessTeacher(sharpness=20.0)
    ens = EnsembleTeacher([soft, sharp], reduce=reduce)
    frames = _frames(B=3, grad=True)
    q = ens.synthesize_queries("p")
    out = ens.reward(frames, q)
    with torch.no_grad():
        a, b = soft.reward(frames, q).log_probs, sharp.reward(frames, q).log_probs
    expected = (a + b) / 2 if reduce == "mean" else torch.minimum(a, b)
    torch.testing.assert_close(out.log_probs.detach(), expected)
    torch.testing.assert_close(out.reward.detach(), expected.mean(-1))  # equal weights
    assert out.log_probs.shape == (3, 2) and out.questions == q.questions
    out.reward.sum().backward()
    assert frames.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="at least two"):
        EnsembleTeacher([soft])
    with pytest.raises(ValueError, match="reduce"):
        EnsembleTeacher([soft, sharp], reduce="max")


def test_from_pretrained_roundtrip(tmp_path):
    from vlmteach_fast.testing import make_qwen_image_processor

    model, tok = make_qwen_vl("qwen2_vl", text_layers=1, vision_depth=1)
    proc = make_qwen_image_processor("qwen2_vl", max_pixels=56 * 56)
    model.save_pretrained(tmp_path)  # safetensors
    tok.save_pretrained(tmp_path)
    proc.save_pretrained(tmp_path)
    cfg = RewardConfig(process_frames=2)
    loaded = VLMTeacher.from_pretrained(str(tmp_path), dtype=torch.float32, config=cfg)
    direct = VLMTeacher(model, (tok, proc), cfg)
    assert loaded.family.max_pixels == 56 * 56  # pixel bounds came from the saved image processor
    frames = _frames(B=1)
    with torch.no_grad():
        torch.testing.assert_close(loaded.reward(frames, QUERIES).log_probs, direct.reward(frames, QUERIES).log_probs)
    assert not any(p.requires_grad for p in loaded.model.parameters())


def test_from_pretrained_rejects_unsupported(tmp_path):
    from transformers import LlamaConfig

    LlamaConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="unsupported VLM family 'llama'"):
        VLMTeacher.from_pretrained(str(tmp_path))


def test_augmented_views():
    from vlmteach_fast.teacher.augment import random_views

    model, tok = _small()
    frames = _frames(B=2, F=4, grad=True)
    plain = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56))
    # Views without noise or shift are the frames themselves: the mean over views is the plain score.
    same = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, augment_views=3, augment_noise=0.0,
                                               augment_shift=0))
    with torch.no_grad():
        torch.testing.assert_close(same.reward(frames, QUERIES).log_probs, plain.reward(frames, QUERIES).log_probs,
                                   atol=TOL, rtol=0)
    aug = VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, augment_views=4))
    calls = []
    hook = aug.family.vision_module.register_forward_hook(lambda m, i, o: calls.append(1))
    try:
        out = aug.reward(frames, QUERIES)
    finally:
        hook.remove()
    assert out.log_probs.shape == (2, 3) and calls == [1] and out.stats["augment_views"] == 4
    out.reward.sum().backward()
    assert frames.grad.abs().sum() > 0
    # Shifts move content by whole pixels with replicated borders; each view's frames share one shift.
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 2, 3, 8, 8)
    views = random_views(x, 5, noise_std=0.0, max_shift=1, generator=g)
    for v in views:
        diffs = [(v[0] - torch.roll(x[0, 0], (dy, dx), dims=(-2, -1)))[..., 1:-1, 1:-1].abs().max()
                 for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        k = int(torch.stack(diffs).argmin())
        assert diffs[k] == 0
        assert (v[1] - torch.roll(x[0, 1], (k // 3 - 1, k % 3 - 1), dims=(-2, -1)))[..., 1:-1, 1:-1].abs().max() == 0
    with pytest.raises(ValueError, match="augment_views"):
        RewardConfig(augment_views=-1)


@pytest.mark.cuda
@pytest.mark.parametrize("family", ["qwen2_vl", "qwen3_vl", "idefics3", "llava"])
def test_cuda_matches_cpu(family):
    if family == "idefics3":
        model, tok = make_idefics3()
    elif family == "llava":
        model, tok = make_llava()
    else:
        model, tok = make_qwen_vl(family, text_layers=1, vision_depth=1)
    cfg = RewardConfig(max_pixels=56 * 56, augment_views=2, augment_noise=0.0, augment_shift=0)
    frames = _frames(B=2)
    with torch.no_grad():
        cpu = VLMTeacher(model, tok, cfg).reward(frames, QUERIES).log_probs
    gpu_teacher = VLMTeacher(model.cuda(), tok, cfg)
    frames_gpu = frames.cuda().requires_grad_(True)
    out = gpu_teacher.reward(frames_gpu, QUERIES)
    out.reward.sum().backward()
    # fp32 on both, but CUDA matmuls may use TF32 and other reduction orders: 1e-3 nats is ~100x the fp32 CPU
    # path differences and far below the ~1 nat spread between questions.
    torch.testing.assert_close(out.log_probs.detach().cpu(), cpu, atol=1e-3, rtol=0)
    assert frames_gpu.grad.abs().sum() > 0


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_patch_embedding_runs_as_a_matmul_with_the_conv_results(family):
    # the teacher swaps the vision tower's strided Conv3d patch embedding for the equivalent matmul (its backward
    # was the slowest op of the reward); values and gradients must be the Conv3d's
    model, tok = make_qwen_vl(family)
    pe = model.model.visual.patch_embed
    x = torch.randn(6, pe.proj.weight[0].numel(), requires_grad=True)
    conv = type(pe).forward(pe, x)  # the class's own Conv3d forward
    VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56))
    assert "forward" in vars(pe)  # the instance is patched
    lin = pe(x)
    # same sums in another order: measured differences up to 5e-6 on outputs of size ~0.1-1
    torch.testing.assert_close(lin, conv, rtol=1e-4, atol=2e-5)
    w = torch.randn_like(lin)
    torch.testing.assert_close(torch.autograd.grad((lin * w).sum(), x)[0], torch.autograd.grad((conv * w).sum(), x)[0],
                               rtol=1e-4, atol=2e-5)
