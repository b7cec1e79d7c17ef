"""Fused LoRA linear vs PEFT LoRA vs the frozen base layer alone: forward, backward, forward+backward of one layer.

Run:  python -m pytest bench/bench_lora.py --benchmark-only --benchmark-json=bench/lora.json
      python bench/report.py bench/lora.json          # ratio tables for bench/RESULTS.md

Providers (what a user would otherwise run):
  base   the frozen nn.Linear alone (no adapter): the floor.
  peft   peft.tuners.lora.Linear wrapping it (dropout 0): what diffusers' add_adapter gives.
  fused  the same PEFT layer after vlmteach_fast.fuse_peft_lora: what this library gives.
The input requires grad, as inside a network; the base weight is frozen. Shapes are a video DiT's token x feature
sizes: CPU 2048 x 1536 (r 16, 64); GPU Wan2.2-5B's 3072 features with 8k and 32k tokens (r 16, 64, 128).
extra_info: backend used, bytes autograd saved for backward (all devices) and peak GPU memory (CUDA).
"""

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from closeness import assert_close_verbose  # noqa: E402
from vlmteach_fast.nn import fuse_peft_lora  # noqa: E402
from vlmteach_fast.ops import select_backend  # noqa: E402
from vlmteach_fast.reference.lora import lora_linear_ref  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32
if CUDA:
    SHAPES = [(t, 3072, r) for t in (8192, 32768) for r in (16, 64, 128)]
else:
    SHAPES = [(2048, 1536, 16), (2048, 1536, 64)]


def _layer(provider: str, features: int, rank: int) -> torch.nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base = torch.nn.Linear(features, features, device=DEVICE, dtype=DTYPE).requires_grad_(False)
    if provider == "base":
        return base
    # the way diffusers' add_adapter injects LoRA; B random so the adapter is not a no-op
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=["0"],
                                               init_lora_weights=False), torch.nn.Sequential(base))
    model.to(device=DEVICE, dtype=DTYPE)
    if provider == "fused":
        report = fuse_peft_lora(model)
        assert report.swapped == ["0"], report
    return model[0]


def _check_against_reference(layer, provider, x, grad) -> None:
    """Once, outside the timed part: the layer's output and input gradient against the plain-torch reference (in
    float64, with the tolerance taken from the reference's own error in DTYPE), so no benchmark times a wrong
    kernel."""
    if provider == "base":
        w, b, a, bb, scale = layer.weight, layer.bias, None, None, 0.0
    else:
        name = next(iter(layer.lora_A))
        w, b = layer.base_layer.weight, layer.base_layer.bias
        a, bb, scale = layer.lora_A[name].weight, layer.lora_B[name].weight, float(layer.scaling[name])
    xr = x.detach().clone().requires_grad_(True)
    out = layer(xr)
    out.backward(grad)

    def ref(dtype):
        xx = x.detach().to(dtype).requires_grad_(True)
        ww, bias = w.detach().to(dtype), b.detach().to(dtype)
        aa = a.detach().to(dtype) if a is not None else torch.zeros(1, w.shape[1], device=x.device, dtype=dtype)
        bbb = bb.detach().to(dtype) if bb is not None else torch.zeros(w.shape[0], 1, device=x.device, dtype=dtype)
        y = lora_linear_ref(xx, ww, bias, aa, bbb, scale)
        y.backward(grad.to(dtype))
        return y, xx.grad

    exact, low = ref(torch.float64), ref(DTYPE)
    assert_close_verbose(out.detach(), low[0], exact[0], name=f"{provider} output")
    assert_close_verbose(xr.grad, low[1], exact[1], name=f"{provider} input gradient")


def _sync():
    if CUDA:
        torch.cuda.synchronize()


def _saved_bytes(layer, x) -> int:
    total = 0

    def pack(t):
        nonlocal total
        if not isinstance(t, torch.nn.Parameter):  # activations only: parameters exist anyway
            total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return total


@pytest.mark.parametrize("mode", ["fwd", "bwd", "full"])
@pytest.mark.parametrize("provider", ["base", "peft", "fused"])
@pytest.mark.parametrize("tokens,features,rank", [pytest.param(*s, id=f"{s[0]}x{s[1]}-r{s[2]}") for s in SHAPES])
def test_lora_layer(benchmark, provider, mode, tokens, features, rank):
    layer = _layer(provider, features, rank)
    x = torch.randn(tokens, features, device=DEVICE, dtype=DTYPE, requires_grad=True)
    grad = torch.randn(tokens, features, device=DEVICE, dtype=DTYPE)
    if mode == "fwd":  # one check per (provider, shape): it covers forward and backward
        _check_against_reference(layer, provider, x, grad)
    benchmark.group = f"{DEVICE.type} {tokens}x{features} r{rank} {mode}"
    benchmark.extra_info.update(provider=provider, mode=mode, tokens=tokens, features=features, rank=rank,
                                dtype=str(DTYPE), device=torch.cuda.get_device_name(0) if CUDA else "cpu",
                                backend=select_backend(DEVICE)[0] if provider == "fused" else "torch",
                                saved_bytes=_saved_bytes(layer, x))

    def fwd():
        out = layer(x)
        _sync()
        return out

    def full():
        layer(x).backward(grad)
        x.grad = None
        _sync()

    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    if mode == "fwd":
        benchmark.pedantic(fwd, rounds=10, warmup_rounds=2)
    elif mode == "full":
        benchmark.pedantic(full, rounds=10, warmup_rounds=2)
    else:
        def setup():
            x.grad = None
            return (layer(x),), {}

        benchmark.pedantic(lambda out: (out.backward(grad), _sync()), setup=setup, rounds=10, warmup_rounds=2)
    if CUDA:
        benchmark.extra_info["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
