"""The Triton LoRA kernels' structure in the interpreter (TRITON_INTERPRET=1, set by conftest on a CPU-only torch):
the shared GEMM with the rank-r term in its accumulator, grouped tile order, autotuning keyed on shape, the one pass
over dY, deterministic reductions, and odd shapes / ranks / layouts against the reference with tolerances from the
reference's own low-precision error (tests/closeness.py). Small shapes: the interpreter runs tl.dot in numpy."""

import pytest
import torch

from closeness import assert_close_verbose
from test_lora_op import _check_against_reference, _make
from vlmteach_fast import _ext

pytestmark = pytest.mark.triton

if not _ext.TRITON.ok or not _ext.triton_usable(torch.device("cpu")):
    pytest.skip("Triton interpreter not available", allow_module_level=True)

import triton  # noqa: E402
import triton.language as tl  # noqa: E402

from vlmteach_fast.kernels import lora as K  # noqa: E402


def test_gemm_is_autotuned_on_shape():
    assert isinstance(K._lora_gemm_kernel, triton.runtime.Autotuner)
    assert list(K._lora_gemm_kernel.keys) == ["M", "N", "K"]


def test_gpu_configs_are_a_small_distinct_set(monkeypatch):
    monkeypatch.setattr(K, "_INTERPRET", False)
    tiles = [(c.kwargs["BLOCK_M"], c.kwargs["BLOCK_N"], c.kwargs["BLOCK_K"]) for c in K._gemm_configs()]
    assert 4 <= len(tiles) <= 8 and len(set(tiles)) == len(tiles)
    assert all(c.kwargs["GROUP_M"] > 1 for c in K._gemm_configs())


@triton.jit
def _tile_probe(out_ptr, M, N, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, GROUP_M: tl.constexpr):
    pid = tl.program_id(0)
    pid_m, pid_n = K._grouped_tile(pid, M, N, BLOCK_M, BLOCK_N, GROUP_M)
    tl.store(out_ptr + 2 * pid, pid_m)
    tl.store(out_ptr + 2 * pid + 1, pid_n)


def test_grouped_tile_order_covers_every_tile_once_and_walks_columns_in_groups():
    M, N, bm, bn, group = 7 * 16, 3 * 16, 16, 16, 3  # 7 row tiles (the last group is short), 3 column tiles
    out = torch.full((21, 2), -1, dtype=torch.int32)
    _tile_probe[(21,)](out, M, N, BLOCK_M=bm, BLOCK_N=bn, GROUP_M=group)
    tiles = [tuple(t) for t in out.tolist()]
    assert sorted(tiles) == [(m, n) for m in range(7) for n in range(3)]
    assert tiles[:4] == [(0, 0), (1, 0), (2, 0), (0, 1)]  # down a group of 3 row tiles, then the next column
    assert tiles[-2:] == [(6, 1), (6, 2)]  # the short last group (one row tile)


@pytest.mark.parametrize("layout", ["fwd", "dx"])
@pytest.mark.parametrize("bias", [True, False])
def test_shared_gemm_adds_the_rank_term_and_bias_in_its_accumulator(layout, bias):
    g = torch.Generator().manual_seed(3)
    M, Kd, N, r, scale = 45, 70, 37, 5, 0.5
    p, s = torch.randn(M, Kd, generator=g), torch.randn(M, r, generator=g)
    q = torch.randn(N, Kd, generator=g) if layout == "fwd" else torch.randn(Kd, N, generator=g)  # W or W^T storage
    z = torch.randn(N, r, generator=g) if layout == "fwd" else torch.randn(r, N, generator=g)  # B or A storage
    qT = q.t() if layout == "fwd" else q  # (K, N) view
    zT = z.t() if layout == "fwd" else z  # (r, N) view
    b = torch.randn(N, generator=g) if bias else None
    out = torch.empty(M, N)
    K._gemm(p, (q, (qT.stride(0), qT.stride(1))), s, (zT.stride(0), zT.stride(1)), z, b, out, scale)
    want = p.double() @ qT.double() + scale * s.double() @ zT.double() + (b.double() if bias else 0)
    torch.testing.assert_close(out.double(), want, rtol=1e-5, atol=1e-5)


def test_backward_is_bitwise_deterministic():
    t = _make((97,), 40, 130, 8, torch.float32)  # 130 out features: three dY column tiles per row tile
    args = [v.detach() for v in (t["x"], t["weight"], t["lora_A"], t["lora_B"])]
    x, w, a, b = args
    g = torch.randn(97, 130)
    xa = x @ a.t()
    first = K.lora_bwd_triton(g, x, xa, w, a, b, 0.3)
    second = K.lora_bwd_triton(g, x, xa, w, a, b, 0.3)
    for u, v in zip(first, second):
        assert torch.equal(u, v)


# Ranks 1..64 including non powers of two (padded to BLOCK_R with masked loads); odd token / feature counts that
# leave partial tiles in M, N and K; 130 out features so the dY pass crosses several column tiles.
@pytest.mark.parametrize("r", [1, 3, 16, 33, 64])
@pytest.mark.parametrize("lead,Kd,N", [((97,), 123, 77), ((3, 11), 40, 130)])
def test_odd_shapes_and_ranks(r, lead, Kd, N):
    _check_against_reference("triton", _make(lead, Kd, N, r, torch.float32, bias=r % 2 == 1))


def test_non_contiguous_parameters():
    """Column-major W, A and B (transposed storage) and a strided x: the kernels read strides, never copies."""
    t = _make((6, 5), 48, 40, 8, torch.float32, noncontig=True)
    for k in ("weight", "lora_A", "lora_B"):
        v = t[k].detach().t().contiguous().t().requires_grad_(t[k].requires_grad)
        assert not v.is_contiguous()
        t[k] = v
    _check_against_reference("triton", t)


def test_fp16_odd_shape():
    _check_against_reference("triton", _make((2, 37), 70, 90, 16, torch.float16))


@pytest.mark.parametrize("layout", ["fwd", "dx"])
def test_gate_benchmark_times_the_same_product_as_torch_mm(layout):
    """bench/bench_lora_gemm.py compares the fused GEMM with torch.mm: both must compute the same base product
    (the fused one plus the rank-r term and bias), or the gate compares unlike work."""
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench", "bench_lora_gemm.py")
    spec = importlib.util.spec_from_file_location("bench_lora_gemm", path)
    gate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gate)
    mm, fused, extra = gate.operands(layout, 40, 48, 4, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(fused(), mm() + extra(), rtol=1e-5, atol=1e-5)
