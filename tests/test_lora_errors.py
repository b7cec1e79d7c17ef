"""Bad input to lora_linear raises ValueError / TypeError naming the argument, the expected and the actual value."""

import math

import pytest
import torch

from vlmteach_fast.ops import lora_linear


def _ok():
    return dict(x=torch.randn(4, 6, 16), weight=torch.randn(12, 16), bias=torch.randn(12),
                lora_A=torch.randn(3, 16), lora_B=torch.randn(12, 3), scale=0.5)


@pytest.mark.parametrize("change,exc,pattern", [
    ({"x": torch.randn(4, 6, 15)}, ValueError, r"`x` must have shape \(\.\.\., in_features\) = \(\.\.\., 16\), got \(4, 6, 15\)"),
    ({"weight": torch.randn(12, 16, 1)}, ValueError, r"`weight` must have shape \(out_features, in_features\)"),
    ({"lora_A": torch.randn(3, 15)}, ValueError, r"`lora_A` must have shape \(r, in_features\) = \(r, 16\), got \(3, 15\)"),
    ({"lora_B": torch.randn(12, 4)}, ValueError, r"`lora_B` must have shape \(out_features, r\) = \(12, 3\), got \(12, 4\)"),
    ({"lora_A": torch.randn(300, 16), "lora_B": torch.randn(12, 300)}, ValueError, r"rank must be in 1\.\.256, got r = 300"),
    ({"bias": torch.randn(11)}, ValueError, r"`bias` must have shape \(out_features,\) = \(12,\), got \(11,\)"),
    ({"lora_B": torch.randn(12, 3, dtype=torch.float16)}, TypeError, r"`lora_B` must have the dtype of `x` \(torch.float32\), got torch.float16"),
    ({"x": torch.ones(4, 6, 16, dtype=torch.int64)}, TypeError, r"`x` must be float32, float16 or bfloat16, got torch.int64"),
    ({"weight": "not a tensor"}, TypeError, r"`weight` must be a torch.Tensor, got str"),
    ({"scale": math.inf}, ValueError, r"`scale` must be finite, got inf"),
    ({"scale": float("nan")}, ValueError, r"`scale` must be finite, got nan"),
    ({"scale": "1.0"}, TypeError, r"`scale` must be a real number, got str"),
    ({"x": torch.randn(4, 6, 16, device="meta")}, ValueError, r"`weight` must be on the device of `x` \(meta\), got cpu"),
])
def test_bad_input(change, exc, pattern):
    args = _ok()
    args.update(change)
    with pytest.raises(exc, match=pattern):
        lora_linear(**args)


def test_tensor_scale_accepted():
    args = _ok()
    expected = lora_linear(**args)
    args["scale"] = torch.tensor(0.5)
    assert torch.equal(lora_linear(**args), expected)
