"""The gate for the fused LoRA GEMMs: each one against torch.mm at the same shapes and layouts (GPU only).

Run:  python -m pytest bench/bench_lora_gemm.py --benchmark-only --benchmark-json=bench/lora_gemm.json

The Triton layer can only beat the cuBLAS composition if each fused GEMM (kernels/lora.py, ``_lora_gemm_kernel``)
runs within ~1.5% of cuBLAS at the same shape: the rank-r work it absorbs is worth no more than that (docs/kernels.md,
"The gate"). Two layouts per shape: fwd, out (M, N) = x (M, K) W^T (+ s S B^T + bias), and dx, (M, K) = dY (M, N) W
(+ dS A). ``mm`` is torch.mm of the base product alone; ``fused`` is the kernel with the rank-r term and bias.
Shapes: VLMTEACH_BENCH_LORA_SHAPES as in bench_lora.py (TOKENSxFEATURESxRANK), default 16384x3072x16.
"""

import os

import pytest
import torch

CUDA = torch.cuda.is_available()
SHAPES = [tuple(int(v) for v in s.lower().split("x"))
          for s in os.environ.get("VLMTEACH_BENCH_LORA_SHAPES", "16384x3072x16").split(",") if s.strip()]


def operands(layout: str, tokens: int, features: int, rank: int, device, dtype):
    """(mm, fused, extra): callables for the base product with torch.mm, the fused GEMM with the rank-r term (and
    bias for fwd) in its accumulator, and that term alone in torch (the check that both time the same product)."""
    from vlmteach_fast.kernels import lora as K

    g = torch.Generator(device=device).manual_seed(0)
    m, f, r = tokens, features, rank
    p = torch.randn(m, f, device=device, dtype=dtype, generator=g)  # x (fwd) or dY (dx)
    w = torch.randn(f, f, device=device, dtype=dtype, generator=g) / f**0.5  # (N, K)
    s = torch.randn(m, r, device=device, dtype=dtype, generator=g)
    z = torch.randn(f, r, device=device, dtype=dtype, generator=g) if layout == "fwd" else \
        torch.randn(r, f, device=device, dtype=dtype, generator=g)  # B (N, r) or A (r, K)
    bias = torch.randn(f, device=device, dtype=dtype, generator=g) if layout == "fwd" else None
    out = torch.empty(m, f, device=device, dtype=dtype)
    q = (w, (w.stride(1), w.stride(0))) if layout == "fwd" else (w, (w.stride(0), w.stride(1)))
    zs = (z.stride(1), z.stride(0)) if layout == "fwd" else (z.stride(0), z.stride(1))
    wt = w.t() if layout == "fwd" else w

    def mm():
        return torch.mm(p, wt)

    def fused():
        return K._gemm(p, q, s, zs, z, bias, out, 0.5)

    def extra():
        term = 0.5 * s.float() @ (z.t() if layout == "fwd" else z).float()
        return term + bias.float() if bias is not None else term

    return mm, fused, extra


@pytest.mark.skipif(not CUDA, reason="the gate compares GPU GEMMs; CPU timings of it would mean nothing")
@pytest.mark.parametrize("provider", ["mm", "fused"])
@pytest.mark.parametrize("layout", ["fwd", "dx"])
@pytest.mark.parametrize("tokens,features,rank", SHAPES)
def test_gemm_gate(benchmark, provider, layout, tokens, features, rank):
    mm, fused, _ = operands(layout, tokens, features, rank, torch.device("cuda"), torch.bfloat16)
    fn = mm if provider == "mm" else fused
    fn()  # autotune outside the timed part
    benchmark.group = f"gate {layout} {tokens}x{features} r{rank} bf16"
    benchmark.extra_info.update(provider=provider, layout=layout, tokens=tokens, features=features, rank=rank,
                                device=torch.cuda.get_device_name(0))
    benchmark.pedantic(lambda: (fn(), torch.cuda.synchronize()), rounds=20, warmup_rounds=3)
