"""Fused LoRA linear vs PEFT LoRA vs the frozen base layer alone: forward, backward, forward+backward of one layer.

Run:  python -m pytest bench/bench_lora.py --benchmark-only --benchmark-json=bench/lora.json
      python bench/report.py bench/lora.json          # ratio tables for bench/RESULTS.md

Providers (what a user would otherwise run):
  base   the frozen nn.Linear alone (no adapter): the floor.
  peft   peft.tuners.lora.Linear wrapping it (dropout 0): what diffusers' add_adapter gives.
  fused  the same PEFT layer after vlmteach_fast.fuse_peft_lora: what this library gives (its automatic backend).
  reference / triton / cuda  the fused layer with that backend forced: the rows bench/lora_table.py turns into the
         table the op chooses its CUDA backend from (triton and cuda on GPUs only: interpreter timings mean nothing).
  compile  torch.compile(mode="max-autotune") of the plain-torch reference: what users get for free (GPU only;
         skipped with the reason when it cannot compile).
The input requires grad, as inside a network; the base weight is frozen. Shapes are a video DiT's token x feature
sizes: CPU 2048 x 1536 (r 16, 64); GPU Wan2.2-5B's 3072 features with 8k and 32k tokens (r 16, 64, 128).
extra_info: backend used, bytes autograd saved for backward (all devices), peak GPU memory (CUDA), and from the
median time: TFLOP/s (the matmul FLOPs this provider must do) and GB/s (the bytes it must at least move).

Overrides (bench/gpu_check.sh uses them; comma-separated):
  VLMTEACH_BENCH_LORA_SHAPES  TOKENSxFEATURESxRANK, e.g. "16384x3072x16,16384x5120x64"
  VLMTEACH_BENCH_LORA_DTYPES  e.g. "bfloat16,float16" (default: bfloat16 on CUDA, float32 on the CPU)
  VLMTEACH_BENCH_LORA_MODES   subset of "fwd,bwd,full"
  VLMTEACH_BENCH_LORA_ROUNDS  timed rounds per benchmark (default 10)
"""

import contextlib
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))
from closeness import assert_close_verbose  # noqa: E402
from vlmteach_fast.nn import fuse_peft_lora  # noqa: E402
from vlmteach_fast.ops import select_backend, use_backend  # noqa: E402
from vlmteach_fast.ops.dispatch import _why_not  # noqa: E402
from vlmteach_fast.reference.lora import lora_linear_ref  # noqa: E402

CUDA = torch.cuda.is_available()
DEVICE = torch.device("cuda" if CUDA else "cpu")
DTYPE = torch.bfloat16 if CUDA else torch.float32
if CUDA:
    SHAPES = [(t, 3072, r) for t in (8192, 32768) for r in (16, 64, 128)]
else:
    SHAPES = [(2048, 1536, 16), (2048, 1536, 64)]


def _env_list(name: str, default: list, parse) -> list:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return [parse(item.strip()) for item in raw.split(",") if item.strip()]
    except (ValueError, AttributeError) as err:
        raise ValueError(f"{name} could not be parsed: {raw!r} ({err})") from None


def _shape(item: str) -> tuple[int, int, int]:
    t, f, r = (int(v) for v in item.lower().split("x"))
    return t, f, r


def _dtype(item: str) -> torch.dtype:
    dt = getattr(torch, item, None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"not a torch dtype: {item!r}")
    return dt


def _mode(item: str) -> str:
    if item not in ("fwd", "bwd", "full"):
        raise ValueError(f"mode must be fwd, bwd or full, got {item!r}")
    return item


SHAPES = _env_list("VLMTEACH_BENCH_LORA_SHAPES", SHAPES, _shape)
DTYPES = _env_list("VLMTEACH_BENCH_LORA_DTYPES", [DTYPE], _dtype)
MODES = _env_list("VLMTEACH_BENCH_LORA_MODES", ["fwd", "bwd", "full"], _mode)
ROUNDS = int(os.environ.get("VLMTEACH_BENCH_LORA_ROUNDS", "10"))


def work(provider: str, mode: str, tokens: int, features: int, rank: int, itemsize: int) -> tuple[float, float]:
    """(matmul FLOPs, minimum bytes moved) of one call. Square layer (K = N = features), frozen base weight, input
    requiring grad. Forward: x @ W^T (2TKN) plus, with LoRA, x @ A^T and (xA^T) @ B^T (2Tr(K + N)). Backward: dx only
    for the base (2TKN); with LoRA also dx through the adapter (2Tr(N + K)) and dA, dB (2Tr(K + N)). Bytes: read x
    and W, write y (forward); read dy, x and W, write dx (backward); the rank-r factors are negligible."""
    t, k, n, r = tokens, features, features, rank
    lora = provider != "base"
    fwd = 2 * t * k * n + (2 * t * r * (k + n) if lora else 0)
    bwd = 2 * t * k * n + (4 * t * r * (k + n) if lora else 0)
    fwd_bytes = (t * k + k * n + t * n) * itemsize
    bwd_bytes = (t * n + k * n + t * k + (t * k if lora else 0)) * itemsize
    flops = {"fwd": fwd, "bwd": bwd, "full": fwd + bwd}[mode]
    nbytes = {"fwd": fwd_bytes, "bwd": bwd_bytes, "full": fwd_bytes + bwd_bytes}[mode]
    return float(flops), float(nbytes)


FORCED = ("reference", "triton", "cuda")  # providers that run the fused layer with one backend forced
PROVIDERS = ["base", "peft", "fused", *FORCED, "compile"]


class _CompiledReference(torch.nn.Module):
    """torch.compile(mode="max-autotune") of the reference on a PEFT layer's parameters; ``source`` is that layer."""

    def __init__(self, source: torch.nn.Module):
        super().__init__()
        self.source = source
        name = next(iter(source.lora_A))
        self._args = (source.base_layer.weight, source.base_layer.bias, source.lora_A[name].weight,
                      source.lora_B[name].weight, float(source.scaling[name]))
        self._fn = torch.compile(lora_linear_ref, mode="max-autotune")

    def forward(self, x):
        return self._fn(x, *self._args)


def _skip_reason(provider: str):
    """Why ``provider`` cannot be measured here, or None."""
    if provider in ("triton", "cuda", "compile") and not CUDA:
        return f"{provider}: GPU only (CPU timings of it would mean nothing)"
    if provider in FORCED:
        return _why_not(provider, DEVICE)
    return None


def _backend_context(provider: str):
    return use_backend(provider) if provider in FORCED else contextlib.nullcontext()


def _layer(provider: str, features: int, rank: int, dtype: torch.dtype) -> torch.nn.Module:
    from peft import LoraConfig, inject_adapter_in_model

    torch.manual_seed(0)
    base = torch.nn.Linear(features, features, device=DEVICE, dtype=dtype).requires_grad_(False)
    if provider == "base":
        return base
    # the way diffusers' add_adapter injects LoRA; B random so the adapter is not a no-op
    model = inject_adapter_in_model(LoraConfig(r=rank, lora_alpha=rank, target_modules=["0"],
                                               init_lora_weights=False), torch.nn.Sequential(base))
    model.to(device=DEVICE, dtype=dtype)
    if provider == "fused" or provider in FORCED:
        report = fuse_peft_lora(model)
        assert report.swapped == ["0"], report
    if provider == "compile":
        return _CompiledReference(model[0])
    return model[0]


def _check_against_reference(layer, provider, x, grad) -> None:
    """Once, outside the timed part: the layer's output and input gradient against the plain-torch reference (in
    float64, with the tolerance taken from the reference's own error in x's dtype), so no benchmark times a wrong
    kernel."""
    run = layer
    if provider == "base":
        w, b, a, bb, scale = layer.weight, layer.bias, None, None, 0.0
    else:
        layer = getattr(layer, "source", layer)  # the compiled reference checks against its PEFT layer's weights
        name = next(iter(layer.lora_A))
        w, b = layer.base_layer.weight, layer.base_layer.bias
        a, bb, scale = layer.lora_A[name].weight, layer.lora_B[name].weight, float(layer.scaling[name])
    xr = x.detach().clone().requires_grad_(True)
    out = run(xr)
    out.backward(grad)

    def ref(dtype):
        xx = x.detach().to(dtype).requires_grad_(True)
        ww, bias = w.detach().to(dtype), b.detach().to(dtype)
        aa = a.detach().to(dtype) if a is not None else torch.zeros(1, w.shape[1], device=x.device, dtype=dtype)
        bbb = bb.detach().to(dtype) if bb is not None else torch.zeros(w.shape[0], 1, device=x.device, dtype=dtype)
        y = lora_linear_ref(xx, ww, bias, aa, bbb, scale)
        y.backward(grad.to(dtype))
        return y, xx.grad

    exact, low = ref(torch.float64), ref(x.dtype)
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


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).removeprefix("torch."))
@pytest.mark.parametrize("tokens,features,rank", [pytest.param(*s, id=f"{s[0]}x{s[1]}-r{s[2]}") for s in SHAPES])
def test_lora_layer(benchmark, provider, mode, dtype, tokens, features, rank):
    why = _skip_reason(provider)
    if why is not None:
        pytest.skip(why)
    with _backend_context(provider):
        _measure(benchmark, provider, mode, dtype, tokens, features, rank)


def _measure(benchmark, provider, mode, dtype, tokens, features, rank):
    layer = _layer(provider, features, rank, dtype)
    x = torch.randn(tokens, features, device=DEVICE, dtype=dtype, requires_grad=True)
    grad = torch.randn(tokens, features, device=DEVICE, dtype=dtype)
    benchmark.group = f"{DEVICE.type} {tokens}x{features} r{rank} {str(dtype).removeprefix('torch.')} {mode}"
    if provider == "compile":
        try:
            layer(x)
        except Exception as err:  # noqa: BLE001 - inductor / compiler failures come as many types
            pytest.skip(f"torch.compile max-autotune could not compile the reference: {type(err).__name__}: {err}")
    if mode == MODES[0]:  # one check per (provider, dtype, shape): it covers forward and backward
        _check_against_reference(layer, provider, x, grad)
    benchmark.extra_info.update(provider=provider, mode=mode, tokens=tokens, features=features, rank=rank,
                                dtype=str(dtype), device=torch.cuda.get_device_name(0) if CUDA else "cpu",
                                backend=(select_backend(DEVICE)[0] if provider == "fused" else
                                         provider if provider in FORCED else "torch"),
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
        benchmark.pedantic(fwd, rounds=ROUNDS, warmup_rounds=2)
    elif mode == "full":
        benchmark.pedantic(full, rounds=ROUNDS, warmup_rounds=2)
    else:
        def setup():
            x.grad = None
            return (layer(x),), {}

        benchmark.pedantic(lambda out: (out.backward(grad), _sync()), setup=setup, rounds=ROUNDS, warmup_rounds=2)
    if CUDA:
        benchmark.extra_info["peak_mem_bytes"] = torch.cuda.max_memory_allocated()
    stats = getattr(benchmark, "stats", None)  # None under --benchmark-disable
    if stats is not None and stats.stats.median > 0:
        flops, nbytes = work(provider, mode, tokens, features, rank, x.element_size())
        benchmark.extra_info.update(tflops=flops / stats.stats.median / 1e12, gbps=nbytes / stats.stats.median / 1e9)
