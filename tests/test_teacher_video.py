"""frames_as='video' for Qwen2/2.5/3-VL: clip patchify, prompt layout, reward vs the stock HF video forward, errors."""

from types import SimpleNamespace

import pytest
import torch
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor

from vlmteach_fast.teacher import Queries, RewardConfig, VLMTeacher
from vlmteach_fast.teacher.preprocess import normalize, qwen_patchify, qwen_video_patchify, resize_images
from vlmteach_fast.testing import make_idefics3, make_llava, make_qwen_vl

QUERIES = Queries("Does the red ball reach the green square?", ["Does the ball stay intact?", "Is it red?"])
TOL = 1e-5  # fp32, same reasoning as test_teacher_reward.TOL


def test_video_patchify_layout():
    frame = torch.rand(1, 3, 28, 56)
    still = qwen_video_patchify(frame[:, None].expand(1, 2, 3, 28, 56), 14, 2, 2)
    assert torch.equal(still[0], qwen_patchify(frame, 14, 2, 2)[0])  # an image is a clip of one repeated frame
    clip = torch.rand(2, 3, 3, 28, 28)  # odd T: padded by repeating the last frame -> gt = 2
    pv, grid = qwen_video_patchify(clip, 14, 2, 2)
    assert grid.tolist() == [[2, 2, 2], [2, 2, 2]] and pv.shape == (2 * 2 * 4, 3 * 2 * 14 * 14)
    first = pv[0].view(3, 2, 14, 14)  # clip 0, temporal patch 0, top-left patch: frames 0 and 1 side by side
    torch.testing.assert_close(first[:, 0], clip[0, 0, :, :14, :14])
    torch.testing.assert_close(first[:, 1], clip[0, 1, :, :14, :14])
    last = pv[7].view(3, 2, 14, 14)  # clip 0, temporal patch 1 = (frame 2, frame 2 repeated), bottom-right patch
    torch.testing.assert_close(last[:, 0], clip[0, 2, :, 14:, 14:])
    torch.testing.assert_close(last[:, 1], clip[0, 2, :, 14:, 14:])


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def teacher(request):
    model, tok = make_qwen_vl(request.param)
    return VLMTeacher(model, tok, RewardConfig(max_pixels=56 * 56, goal_frames=2, process_frames=4,
                                               frames_as="video", video_fps=8.0))


def _placeholder(teacher, grid, frame_indices):
    """The video placeholder text as the HF processors write it (Qwen3-VL's own `replace_video_token`, unbound:
    the processor itself cannot be built without torchvision)."""
    ad = teacher.family
    if ad.name != "qwen3_vl":
        return "<|vision_start|>" + "<|video_pad|>" * ad.tokens_per_item(grid[0]) + "<|vision_end|>"
    fake = SimpleNamespace(
        video_processor=SimpleNamespace(merge_size=ad.merge_size, temporal_patch_size=ad.temporal_patch_size),
        vision_start_token="<|vision_start|>", video_token="<|video_pad|>", vision_end_token="<|vision_end|>",
        _calculate_timestamps=lambda *a: Qwen3VLProcessor._calculate_timestamps(None, *a),
    )
    meta = SimpleNamespace(fps=teacher.config.video_fps, frames_indices=list(frame_indices))
    return Qwen3VLProcessor.replace_video_token(fake, {"video_grid_thw": grid, "video_metadata": [meta]}, 0)


def _hf_video_reference(teacher, frames, queries):
    """Per question and video: the stock HF forward with pixel_values_videos (the model's own video RoPE)."""
    ad, cfg = teacher.family, teacher.config
    B, F_ = frames.shape[:2]
    out = torch.zeros(B, len(queries))
    for b in range(B):
        for qi, (question, kind) in enumerate(zip(queries.questions, queries.kinds)):
            idx = teacher._views(F_, [kind])[kind]
            size = ad.video_target_size(len(idx), *frames.shape[-2:], cfg.min_pixels, cfg.max_pixels)
            x = normalize(resize_images(frames[b, idx], size), ad.mean, ad.std)[None]
            pv, grid = qwen_video_patchify(x, ad.patch_size, ad.temporal_patch_size, ad.merge_size)
            text = _placeholder(teacher, grid, idx) + question + cfg.question_suffix
            ids = ad.head_ids() + ad.question_ids(text)
            ids = torch.tensor([ids])
            logits = teacher.model(
                input_ids=ids, pixel_values_videos=pv, video_grid_thw=grid,
                mm_token_type_ids=(ids == ad.video_token_id).int() * 2,
            ).logits[0, -1]
            out[b, qi] = logits.log_softmax(-1)[teacher.yes_id]
    return out


@pytest.mark.parametrize("share_prefix", [True, False])
def test_video_reward_matches_hf_forward(teacher, share_prefix):
    frames = torch.rand(2, 6, 3, 50, 60)
    teacher.config.share_prefix = share_prefix
    try:
        with torch.no_grad():
            out = teacher.reward(frames, QUERIES)
            ref = _hf_video_reference(teacher, frames, QUERIES)
    finally:
        teacher.config.share_prefix = True
    torch.testing.assert_close(out.log_probs, ref, atol=TOL, rtol=0)
    assert out.stats["vision_calls"] == 1 and out.stats["visual_items"] == 2 * 2  # 2 videos x (goal, process) clip
    assert (ref[:, 0] - ref[:, 1]).abs().max() > 1e-2


def test_video_gradient_reaches_frames(teacher):
    frames = torch.rand(1, 6, 3, 50, 60, requires_grad=True)
    teacher.reward(frames, QUERIES).reward.sum().backward()
    seen = (frames.grad.abs().sum(dim=(0, 2, 3, 4)) > 0).nonzero().flatten().tolist()
    assert seen == [0, 2, 3, 4, 5]  # process: uniform 4 of 6 = 0, 2, 3, 5; goal: last 2 = 4, 5
    assert all(p.grad is None for p in teacher.model.parameters())


@pytest.mark.parametrize("family", ["idefics3", "llava"])
def test_video_mode_unsupported(family):
    model, tok = make_idefics3() if family == "idefics3" else make_llava()
    teacher = VLMTeacher(model, tok, RewardConfig(frames_as="video"))
    with pytest.raises(ValueError, match="frames_as='video' is not supported"):
        teacher.reward(torch.rand(1, 4, 3, 32, 32), ["Is it red?"])
    with pytest.raises(ValueError, match="frames_as"):
        RewardConfig(frames_as="clip")
    with pytest.raises(ValueError, match="video_fps"):
        RewardConfig(video_fps=0.0)


def test_qwen3_timestamps_in_prompt():
    model, tok = make_qwen_vl("qwen3_vl", text_layers=1, vision_depth=1)
    teacher = VLMTeacher(model, tok, RewardConfig(frames_as="video", process_frames=4, video_fps=2.0))
    feats = teacher.family.encode_videos([torch.rand(1, 4, 3, 32, 32)], frame_indices=[[0, 2, 5, 7]], fps=2.0)
    # Patches (0, 2) and (5, 7) at 2 fps: times (0 + 1) / 2 = 0.5 s and (2.5 + 3.5) / 2 = 3.0 s.
    assert feats.timestamps == [[0.5, 3.0]]
    text = tok.decode(teacher.family.item_ids(feats, 0))
    assert text.count("seconds") == 2 and text.count("<|vision_start|>") == 2


def _video_processor_code(family):
    """transformers' own video-processor sizing for `family`, without importing the module (it needs torchvision):
    its module-level `smart_resize` and the processor class's default `size`, read from the installed source."""
    import ast
    import importlib.util
    import math
    import os

    sub = {"qwen2_vl": "qwen2_vl", "qwen3_vl": "qwen3_vl"}[family]
    spec = importlib.util.find_spec(f"transformers.models.{sub}")
    path = os.path.join(os.path.dirname(spec.origin), f"video_processing_{sub}.py")
    with open(path) as f:
        tree = ast.parse(f.read())
    ns = {"math": math}
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "smart_resize")
    exec(compile(ast.Module(body=[fn], type_ignores=[]), path, "exec"), ns)
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name.endswith("VideoProcessor"))
    size = next(n.value for n in cls.body if isinstance(n, ast.Assign) and n.targets[0].id == "size")
    return ns["smart_resize"], eval(compile(ast.Expression(size), path, "eval"), {"__builtins__": {}})


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_video_sizing_is_the_video_processors(family):
    """frames_as='video' sizes frames as transformers' video processor does (not with the image processor's
    bounds): e.g. Qwen2-VL, 720 x 1280 clip -> grid 40 x 72, where the image bounds give 52 x 92."""
    resize, size = _video_processor_code("qwen3_vl" if family == "qwen3_vl" else "qwen2_vl")
    model, tok = make_qwen_vl(family)
    ad = VLMTeacher(model, tok).family
    factor = ad.patch_size * ad.merge_size
    for t, h, w in [(2, 720, 1280), (4, 480, 832), (8, 1024, 1024), (2, 50, 60), (6, 200, 40), (3, 2160, 3840)]:
        if family == "qwen3_vl":
            ref = resize(t, h, w, temporal_factor=ad.temporal_patch_size, factor=factor,
                         min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
        else:
            ref = resize(h, w, factor=factor, min_pixels=size["shortest_edge"], max_pixels=size["longest_edge"])
        assert ad.video_target_size(t, h, w) == tuple(ref), (t, h, w)
    if family == "qwen2_vl":
        assert tuple(x // ad.patch_size for x in ad.video_target_size(2, 720, 1280)) == (40, 72)
        assert tuple(x // ad.patch_size for x in ad.target_size(720, 1280, None, None)) == (52, 92)


def test_a_full_processors_video_bounds_are_used():
    model, tok = make_qwen_vl("qwen2_vl")
    vp = SimpleNamespace(size={"shortest_edge": 28 * 28, "longest_edge": 28 * 28 * 4})
    teacher = VLMTeacher(model, SimpleNamespace(tokenizer=tok, image_processor=None, video_processor=vp))
    assert (teacher.family.video_min_pixels, teacher.family.video_max_pixels) == (784, 3136)
    feats = teacher.family.encode_videos([torch.rand(1, 2, 3, 112, 112)])
    assert feats.grid_thw.tolist() == [[1, 4, 4]]  # 112 x 112 capped to 56 x 56: 4 x 4 patches of 14


def test_video_sizing_matches_the_real_video_processor_where_torchvision_is_installed():
    pytest.importorskip("torchvision")
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    model, tok = make_qwen_vl("qwen2_vl")
    ad = VLMTeacher(model, tok).family
    video = (torch.rand(4, 3, 90, 160) * 255).to(torch.uint8)
    out = Qwen2VLVideoProcessor()(videos=[video], return_tensors="pt", do_sample_frames=False)
    gt, gh, gw = out["video_grid_thw"][0].tolist()
    assert (gh, gw) == tuple(x // ad.patch_size for x in ad.video_target_size(4, 90, 160))
