"""CUDA: the sources compile with nvcc for sm_80 and sm_90 (compile only, no GPU needed); runtime tests need a GPU.

A CPU-only torch wheel ships torch's headers but not the CMake-generated ``c10/cuda/impl/cuda_cmake_macros.h``; the
compile check supplies that one-line header (what a CUDA build of torch generates) from a temporary directory.
"""

import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

import pytest
import torch

from closeness import assert_close_verbose

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NVCC = shutil.which("nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")


def _cuda_include() -> str:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = ([os.path.join(home, "include")] if home else []) + sorted(glob.glob("/usr/local/cuda*/include"))
    for inc in candidates:
        if os.path.exists(os.path.join(inc, "cuda_runtime.h")):
            return inc
    dry = subprocess.run([NVCC, "--dryrun", "-x", "cu", "-c", os.devnull, "-o", os.devnull],
                         capture_output=True, text=True).stderr
    for inc in re.findall(r'-I"?([^\s"]+)', dry):
        if os.path.exists(os.path.join(inc, "cuda_runtime.h")):
            return inc
    pytest.skip("cannot locate the CUDA toolkit's include directory (set CUDA_HOME)")


def _include_flags(tmp_path):
    from torch.utils.cpp_extension import include_paths

    shim = tmp_path / "c10" / "cuda" / "impl"
    shim.mkdir(parents=True)
    (shim / "cuda_cmake_macros.h").write_text("#pragma once\n#define C10_CUDA_BUILD_SHARED_LIBS\n")
    flags = [f"-I{tmp_path}"] + [f"-I{p}" for p in include_paths()] + [f"-I{sysconfig.get_paths()['include']}"]
    return flags + ["-DTORCH_EXTENSION_NAME=_C_cuda"]


@needs_nvcc
@pytest.mark.slow
def test_kernel_compiles_with_nvcc_for_sm80_and_sm90(tmp_path):
    # One nvcc call with both targets: host code is parsed once; nvcc fails if either architecture fails.
    obj = tmp_path / "lora_cuda.o"
    cmd = [NVCC, "-c", os.path.join(ROOT, "csrc", "lora_cuda.cu"), "-o", str(obj), "-std=c++20", "-O3",
           "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_90,code=sm_90"]
    res = subprocess.run(cmd + _include_flags(tmp_path), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]
    assert obj.stat().st_size > 0
    # the kernel was instantiated for every dtype the dispatcher allows
    syms = subprocess.run(["nm", "-C", str(obj)], capture_output=True, text=True).stdout
    for t in ("float", "double", "c10::Half", "c10::BFloat16"):
        assert f"rank_update_kernel<{t}>" in syms, f"no {t} instantiation"


@needs_nvcc
@pytest.mark.slow
def test_cuda_ops_source_compiles(tmp_path):
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    cmd = [cxx, "-fsyntax-only", "-std=c++20", os.path.join(ROOT, "csrc", "lora_cuda_ops.cpp"),
           f"-I{_cuda_include()}"] + _include_flags(tmp_path)
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-4000:]


# ----- runtime on a GPU (skipped without one, see conftest.py) -----

def _gpu_inputs(M, K, N, r, dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    mk = lambda *s: torch.randn(*s, device="cuda", generator=g)  # noqa: E731
    return (mk(M, K).to(dtype), (mk(N, K) / K**0.5).to(dtype), mk(N).to(dtype), (mk(r, K) / K**0.5).to(dtype),
            (mk(N, r) / r**0.5).to(dtype))


@pytest.mark.cuda
@pytest.mark.parametrize("backend", ["triton", "cuda"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("M,K,N,r", [(97, 123, 77, 1), (1000, 1536, 1536, 16), (4096, 3072, 3072, 128)])
def test_gpu_backend_matches_reference(backend, dtype, M, K, N, r):
    from vlmteach_fast.ops import available_backends, lora_linear, use_backend
    from vlmteach_fast.reference import lora_linear_ref

    if backend not in available_backends(torch.device("cuda")):
        pytest.skip(f"{backend} backend not available on this GPU machine")
    x, w, b, a, bb = _gpu_inputs(M, K, N, r, dtype)
    grad = torch.randn(M, N, device="cuda")

    def run(fn, *ts, cast):
        leaves = [t.detach().to(cast).requires_grad_(i in (0, 3, 4)) for i, t in enumerate(ts)]
        out = fn(leaves[0], leaves[1], leaves[2], leaves[3], leaves[4], 0.5)
        out.backward(grad.to(cast))
        return [out.detach()] + [leaves[i].grad for i in (0, 3, 4)]

    exact = run(lora_linear_ref, x, w, b, a, bb, cast=torch.float64)
    low = run(lora_linear_ref, x, w, b, a, bb, cast=dtype)
    with use_backend(backend):
        got = run(lora_linear, x, w, b, a, bb, cast=dtype)
    for name, g_, l_, e_ in zip(("out", "dx", "dA", "dB"), got, low, exact):
        assert_close_verbose(g_, l_, e_, f"{backend} {dtype} {name}", factor=2.0, floor=1e-5)


@pytest.mark.cuda
def test_cuda_extension_loaded_when_built_for_this_torch():
    from vlmteach_fast import _ext

    if not os.environ.get("VLMTEACH_EXPECT_CUDA_EXT"):
        pytest.skip("set VLMTEACH_EXPECT_CUDA_EXT=1 where the CUDA extension was built")
    assert _ext.CUDA_EXT.ok, _ext.CUDA_EXT.reason
    assert sys.modules.get("vlmteach_fast._C_cuda") is not None
