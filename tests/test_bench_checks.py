"""The benchmarks' one-time correctness checks (run outside the timed part) pass on the real code and fail on a
wrong one, so a benchmark cannot time a wrong kernel or a gradient-dropping checkpoint."""

import importlib.util
import os

import pytest
import torch

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


def _load(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}_under_test", os.path.join(BENCH, f"bench_{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("provider", ["base", "peft", "fused"])
def test_lora_benchmark_check_catches_a_wrong_layer(provider):
    bench = _load("lora")
    layer = bench._layer(provider, 64, 8, bench.DTYPE)
    x = torch.randn(32, 64, device=bench.DEVICE, dtype=bench.DTYPE, requires_grad=True)
    grad = torch.randn(32, 64, device=bench.DEVICE, dtype=bench.DTYPE)
    bench._check_against_reference(layer, provider, x, grad)
    right = layer.forward
    layer.forward = lambda inp: right(inp) * (1 + 1e-3)  # a kernel off by 0.1 %
    with pytest.raises(AssertionError, match=f"{provider} output: max abs error"):
        bench._check_against_reference(layer, provider, x, grad)


def test_reasoner_benchmark_check_catches_a_cut_gradient(monkeypatch):
    from vlmteach_fast.reasoner import Reasoner

    bench = _load("reasoner")
    r, prep, light = bench._reasoner()
    with torch.no_grad():  # lora_B random: every LoRA parameter gets a gradient
        for name, p in r.named_lora_parameters().items():
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    bench._check_against_reference(r, prep, light, 2, True)
    orig = Reasoner._one_step
    monkeypatch.setattr(Reasoner, "_one_step", lambda self, p, lat, *a, **k: orig(self, p, lat.detach(), *a, **k))
    with pytest.raises(AssertionError):
        bench._check_against_reference(r, prep, light, 2, True)
