"""First frames of any size are brought to the model's geometry (resize + center crop or pad, aspect ratio kept),
the geometry is checked before any model work, and what was done is recorded."""

import pytest
import torch

from vlmteach_fast.first_frame import fit_image, resolve_size
from vlmteach_fast.instance import SamplingConfig, prepare_first_frame, setup_instance
from vlmteach_fast.reasoner import LoRASpec, Reasoner


@pytest.fixture(scope="module")
def wan():
    from vlmteach_fast.testing import tiny_wan_pipeline

    return Reasoner.from_pipeline(tiny_wan_pipeline("ti2v"), LoRASpec(rank=2))


@pytest.fixture(scope="module")
def cog():
    from vlmteach_fast.testing import tiny_cogvideox_i2v_pipeline

    return Reasoner.from_pipeline(tiny_cogvideox_i2v_pipeline(), LoRASpec(rank=2))


def test_size_rules(wan, cog):
    a = wan.family  # sides must be multiples of 16 (8x VAE x 2x patch)
    assert a.size_multiple() == (16, 16)
    assert resolve_size(a, 64, 96, (1000, 10), None) == (64, 96)  # configured: as given
    assert resolve_size(a, None, None, (40, 70), None) == (32, 64)  # the image's, rounded down to multiples
    assert resolve_size(a, None, None, (1024, 1024), 480 * 832) == (624, 624)  # capped area, aspect kept
    assert resolve_size(a, 32, None, (100, 200), None) == (32, 64)  # one side given: the other from the aspect
    assert resolve_size(a, None, 48, (100, 200), None) == (16, 48)
    assert resolve_size(a, None, None, None, None) == (480, 832)  # text-to-video: the pipeline's default
    assert resolve_size(cog.family, None, None, (1024, 1024), None) == (16, 16)  # the checkpoint's only size


def test_crop_keeps_the_center_and_the_aspect_ratio():
    img = torch.zeros(3, 32, 64)
    img[0, :, :32] = 1.0  # left half red, right half blue
    img[2, :, 32:] = 1.0
    out, info = fit_image(img, 16, 16, "crop")  # scale 1/2 to 16 x 32, then keep the middle 16 columns
    assert out.shape == (3, 16, 16) and info == {"source": [32, 64], "fit": "crop", "scaled": [16, 32],
                                                  "offset": [0, 8]}
    assert torch.allclose(out[0, :, :7], torch.ones(16, 7), atol=1e-4)  # left of the center: red
    assert torch.allclose(out[2, :, 9:], torch.ones(16, 7), atol=1e-4)  # right of the center: blue
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0


def test_pad_keeps_everything_and_pads_with_black():
    img = torch.rand(3, 32, 64, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.25
    out, info = fit_image(img, 64, 64, "pad")  # no scaling needed: 32 x 64 fits, 16 black rows above and below
    assert info == {"source": [32, 64], "fit": "pad", "scaled": [32, 64], "offset": [16, 0]}
    assert torch.equal(out[:, 16:48], img) and out[:, :16].abs().sum() == 0 and out[:, 48:].abs().sum() == 0


def test_a_frame_of_the_target_size_is_returned_as_given():
    img = torch.rand(3, 32, 32)
    out, info = fit_image(img, 32, 32, "crop")
    assert out is img and info["fit"] == "none"
    with pytest.raises(ValueError, match="`fit` must be one of"):
        fit_image(img, 16, 16, "stretch")
    with pytest.raises(ValueError, match="SamplingConfig.fit must be one of"):
        SamplingConfig(fit="stretch")


def test_configured_size_and_another_image_size_now_work_and_are_recorded(wan):
    from PIL import Image

    image = Image.new("RGB", (50, 30), (200, 30, 30))  # neither 32 x 32 nor a multiple of 16
    s = SamplingConfig(num_frames=5, height=32, width=32)
    fitted, geom = prepare_first_frame(wan, image, s)
    assert tuple(fitted.shape) == (3, 32, 32)
    assert geom == {"num_frames": 5, "height": 32, "width": 32, "source": [30, 50], "fit": "crop",
                    "scaled": [32, 53], "offset": [0, 10]}
    _, from_image = prepare_first_frame(wan, image, SamplingConfig(num_frames=5))
    assert (from_image["height"], from_image["width"]) == (16, 48)  # 30 x 50 rounded down to multiples of 16


class _NoModelWork:
    def synthesize_queries(self, *a, **k):
        raise AssertionError("the teacher must not run before the geometry is checked")

    def reward(self, *a, **k):
        raise AssertionError("the teacher must not run before the geometry is checked")


def test_fixed_resolution_checkpoint_fails_before_any_model_work(cog):
    bad = SamplingConfig(num_frames=9, height=32, width=32, max_sequence_length=16)
    with pytest.raises(ValueError, match=r"`height` and `width` must be \(16, 16\) for this "
                                         r"CogVideoXImageToVideoPipeline checkpoint"):
        setup_instance(cog, _NoModelWork(), "p", torch.rand(3, 32, 32), sampling=bad)
    # no size configured: the checkpoint's own size is used and a frame of any size is fitted to it
    _, geom = prepare_first_frame(cog, torch.rand(3, 40, 60), SamplingConfig(num_frames=9))
    assert (geom["height"], geom["width"], geom["fit"]) == (16, 16, "crop")


# ----- pixel values: 16-bit and float images are scaled by their range, not clipped to 0..255 -----

def _grey(image):
    import numpy as np

    return np.asarray(image)[..., 0].astype(int)


def test_a_16_bit_grey_png_keeps_its_grey_levels(tmp_path):
    import numpy as np
    from PIL import Image

    from vlmteach_fast.instance import load_image

    levels = np.array([[0, 16384, 32768, 65535]], dtype=np.uint16)  # PIL's own convert gives 0, 255, 255, 255
    Image.fromarray(levels).save(tmp_path / "g16.png")
    for source in (tmp_path / "g16.png", Image.open(tmp_path / "g16.png")):  # solve --image / a suite; the API
        image = load_image(source)
        assert image.mode == "RGB" and _grey(image).tolist() == [[0, 64, 128, 255]]


def test_a_float_image_in_0_1_is_scaled_and_one_outside_is_refused_by_name(tmp_path):
    import numpy as np
    from PIL import Image

    from vlmteach_fast.instance import load_image

    ramp = Image.fromarray(np.array([[0.0, 0.25, 0.5, 1.0005]], dtype=np.float32))  # PIL's own: all black
    assert _grey(load_image(ramp)).tolist() == [[0, 64, 128, 255]]
    with pytest.raises(ValueError, match=r"`image` is a float \(mode F\) image with values in \[0, 255\]; expected "
                                         r"\[0, 1\]"):
        load_image(Image.fromarray(np.array([[0.0, 255.0]], dtype=np.float32)))
    Image.fromarray(np.array([[0.0, 2.0]], dtype=np.float32)).save(tmp_path / "f.tiff")
    with pytest.raises(ValueError, match=r"`image` '.*f\.tiff' is a float \(mode F\) image with values in \[0, 2\]"):
        load_image(tmp_path / "f.tiff")
