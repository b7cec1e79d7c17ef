"""Torch-side preprocessing vs the HF (PIL-backed) Qwen2-VL image processor, and frame selection."""

import numpy as np
import pytest
import torch

from vlmteach_fast.testing import (
    make_idefics3,
    make_idefics_image_processor,
    make_llava,
    make_llava_image_processor,
    make_qwen_image_processor,
    make_qwen_vl,
)
from vlmteach_fast.teacher.idefics3 import Idefics3Family
from vlmteach_fast.teacher.llava import LlavaFamily
from vlmteach_fast.teacher.preprocess import qwen_patchify, resize_images, select_frames, smart_resize
from vlmteach_fast.teacher.qwen_vl import QwenVLFamily

# HF resizes uint8 images with PIL, rounding to uint8 after each of its two passes; we keep floats (rounding would
# kill the gradient). Measured worst case on white noise: 1.05 uint8 levels (first-pass rounding carried through the
# second pass's kernel, whose L1 norm is ~1.1, plus the final rounding); 1.5 levels leaves margin without hiding a
# wrong filter (no antialias or a joint 2-D resize are off by 16-150 levels). Mean error of pure rounding is ~0.25.
MAX_LEVELS = 1.5
MEAN_LEVELS = 0.4


def _noise_image(h, w, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype("uint8")


def _smooth_image(h, w):
    yy, xx = np.meshgrid(np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    img = np.stack([0.5 + 0.4 * np.sin(6 * xx), 0.5 + 0.4 * np.cos(5 * yy), 0.2 + 0.6 * xx * yy], -1)
    return (img * 255).round().astype("uint8")


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen3_vl"])
def family(request):
    model, tok = make_qwen_vl(request.param, text_layers=1, vision_depth=1)
    return request.param, model, tok


@pytest.mark.parametrize(
    "hw,max_pixels,image",
    [
        ((56, 56), 56 * 56, "noise"),  # already a multiple of 28: Qwen2 no resize, Qwen3 downscale to 32
        ((64, 64), 112 * 112, "noise"),  # equal downscale both axes
        ((120, 90), 112 * 112, "noise"),  # capped by max_pixels
        ((50, 70), 56 * 56, "smooth"),  # mixed up/down scaling
        ((33, 100), 56 * 56, "smooth"),  # extreme aspect ratio
    ],
)
def test_preprocess_matches_hf_processor(family, hw, max_pixels, image):
    name, model, tok = family
    proc = make_qwen_image_processor(name, max_pixels=max_pixels)
    family = QwenVLFamily(model, tok, proc)
    img = _noise_image(*hw) if image == "noise" else _smooth_image(*hw)
    ref = proc(images=[img], return_tensors="pt")
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    pixel_values, grid = family.preprocess(x)
    assert torch.equal(grid, ref["image_grid_thw"]), (grid, ref["image_grid_thw"])
    assert pixel_values.shape == ref["pixel_values"].shape
    # Normalized units -> uint8 levels: divide by 1 / (255 * std) for the smallest std.
    scale = 255 * min(family.std)
    diff = (pixel_values - ref["pixel_values"]).abs() * scale
    assert diff.max() <= MAX_LEVELS, f"max diff {float(diff.max()):.3f} uint8 levels"
    assert diff.mean() <= MEAN_LEVELS, f"mean diff {float(diff.mean()):.3f} uint8 levels"


def test_preprocess_exact_without_resize():
    model, tok = make_qwen_vl("qwen2_vl", text_layers=1, vision_depth=1)
    proc = make_qwen_image_processor("qwen2_vl", max_pixels=56 * 84)
    family = QwenVLFamily(model, tok, proc)
    img = _noise_image(56, 84, seed=3)
    ref = proc(images=[img], return_tensors="pt")
    pixel_values, _ = family.preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    # Only float rounding of (x/255 - mean)/std differs (fp32 in both): 1e-5 is ~30 ulps at |x| <= 2.
    torch.testing.assert_close(pixel_values, ref["pixel_values"], atol=1e-5, rtol=0)


def test_family_defaults_without_image_processor():
    model, tok = make_qwen_vl("qwen3_vl", text_layers=1, vision_depth=1)
    family = QwenVLFamily(model, tok)
    assert family.mean == (0.5, 0.5, 0.5) and family.patch_size == 16
    assert (family.min_pixels, family.max_pixels) == (65536, 16777216)


def test_patchify_layout_and_gradient():
    x = torch.rand(2, 3, 56, 28, requires_grad=True)
    pv, grid = qwen_patchify(x, patch_size=14, temporal_patch_size=2, merge_size=2)
    assert pv.shape == (2 * 4 * 2, 3 * 2 * 14 * 14)
    assert grid.tolist() == [[1, 4, 2], [1, 4, 2]]
    # First patch row is the top-left 14x14 patch of image 0, channel-major, repeated over the temporal patch.
    first = pv[0].view(3, 2, 14, 14)
    torch.testing.assert_close(first[:, 0], x[0, :, :14, :14])
    torch.testing.assert_close(first[:, 1], x[0, :, :14, :14])
    # Second row is the patch to its right (inside the same 2x2 merge group), third the one below.
    torch.testing.assert_close(pv[1].view(3, 2, 14, 14)[:, 0], x[0, :, :14, 14:28])
    torch.testing.assert_close(pv[2].view(3, 2, 14, 14)[:, 0], x[0, :, 14:28, :14])
    pv.sum().backward()
    assert torch.all(x.grad == 2)  # every pixel appears once, repeated over 2 temporal slots
    with pytest.raises(ValueError, match="multiple of 28"):
        qwen_patchify(torch.rand(1, 3, 30, 28), 14, 2, 2)


def test_resize_gradient_flows():
    x = torch.rand(1, 3, 40, 50, requires_grad=True)
    resize_images(x, (28, 56)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_select_frames():
    assert select_frames(8, 1, "last") == [7]
    assert select_frames(8, 2, "last") == [6, 7]
    assert select_frames(8, 4, "uniform") == [0, 2, 5, 7]
    assert select_frames(3, 10, "uniform") == [0, 1, 2]
    assert select_frames(5, 1, "uniform") == [4]
    with pytest.raises(ValueError, match="mode"):
        select_frames(8, 2, "middle")
    with pytest.raises(ValueError, match="count"):
        select_frames(8, 0, "last")


def test_smart_resize_bounds():
    assert smart_resize(56, 56, 28, 56 * 56, 28 * 28 * 1280) == (56, 56)
    h, w = smart_resize(1000, 500, 28, 56 * 56, 112 * 112)
    assert h % 28 == 0 and w % 28 == 0 and h * w <= 112 * 112
    with pytest.raises(ValueError, match="aspect ratio"):
        smart_resize(10, 2100, 28, 1, 10**7)


@pytest.mark.parametrize("mode,pil_filter", [("bicubic", 3), ("lanczos", 1), ("bilinear", 2)])
@pytest.mark.parametrize("hw,out", [((40, 64), (40, 23)), ((31, 50), (97, 50)), ((64, 64), (48, 80))])
def test_resize_matches_pil(mode, pil_filter, hw, out):
    from PIL import Image

    img = _noise_image(*hw, seed=7)
    ref = np.asarray(Image.fromarray(img).resize((out[1], out[0]), pil_filter)).astype(np.float32)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    got = resize_images(x, out, mode)[0].permute(1, 2, 0).numpy() * 255
    # 1-D cases: only PIL's final uint8 rounding (0.5) and its 22-bit fixed-point weights differ. 2-D case: plus the
    # first pass's rounding carried through the second kernel (L1 norm <= ~1.3 for lanczos upscaling).
    tol = 0.51 if hw[0] == out[0] or hw[1] == out[1] else 1.5
    assert np.abs(got - ref).max() <= tol


@pytest.mark.parametrize(
    "hw,longest_edge,image",
    [
        ((64, 64), 64, "noise"),  # no resize at all: exact
        ((64, 64), 128, "noise"),  # up to 128 then down to 64
        ((50, 70), 128, "noise"),
        ((120, 90), 128, "smooth"),
        ((33, 100), 256, "smooth"),
        ((200, 150), 64, "smooth"),
    ],
)
def test_idefics3_preprocess_matches_hf_processor(hw, longest_edge, image):
    model, tok = make_idefics3("idefics3")
    proc = make_idefics_image_processor(image_size=64, longest_edge=longest_edge)
    family = Idefics3Family(model, tok, proc)
    img = _noise_image(*hw) if image == "noise" else _smooth_image(*hw)
    ref = proc(images=[[img]], return_tensors="pt")["pixel_values"][0]  # (1, 3, 64, 64)
    pixel_values, _ = family.preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    assert pixel_values.shape == ref.shape
    diff = (pixel_values - ref).abs() * 255 * min(family.std)
    # Two chained LANCZOS resizes, each rounded to uint8 by PIL: the first rounding passes through the second
    # kernel (L1 norm ~1.3) on top of the final rounding; measured max 1.75 levels, so 2.0. (White noise can also
    # hit the undocumented pass order of Pillow, see resize_images; those sizes are not used here.)
    assert diff.max() <= 2.0, f"max diff {float(diff.max()):.3f} uint8 levels"
    assert diff.mean() <= MEAN_LEVELS
    if (hw, longest_edge) == ((64, 64), 64):
        assert diff.max() < 1e-3


@pytest.mark.parametrize(
    "hw,image", [((32, 32), "noise"), ((50, 70), "noise"), ((90, 40), "smooth"), ((33, 100), "smooth")]
)
def test_llava_preprocess_matches_hf_processor(hw, image):
    model, tok = make_llava()
    proc = make_llava_image_processor(image_size=32)
    family = LlavaFamily(model, tok, proc)
    img = _noise_image(*hw) if image == "noise" else _smooth_image(*hw)
    ref = proc(images=[img], return_tensors="pt")["pixel_values"]
    pixel_values, _ = family.preprocess(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)
    assert pixel_values.shape == ref.shape == (1, 3, 32, 32)
    diff = (pixel_values - ref).abs() * 255 * min(family.std)
    # One BICUBIC resize then an integer crop: same bound as the Qwen case.
    assert diff.max() <= MAX_LEVELS, f"max diff {float(diff.max()):.3f} uint8 levels"
    assert diff.mean() <= MEAN_LEVELS
