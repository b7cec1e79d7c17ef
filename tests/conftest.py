"""Shared test setup: seeds, CUDA skip marker, the tiny `pipe` fixture. No device queries at import time, so the
suite collects on a CPU-only machine."""

import os
import random

import pytest
import torch

# With a CPU-only torch, Triton kernels run on CPU tensors through the interpreter, which must be switched on before
# triton is imported (docs/architecture.md). With a CUDA build of torch they run compiled on the GPU (the `cuda`-marked tests).
if torch.version.cuda is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")


# The tests run tiny models whose ops are overhead-bound: one thread avoids oversubscribing a shared 2-core machine
# (measured: the reasoner tests went from 135 s to 17 s under load). Benchmarks set their own thread counts.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pipe():
    """A tiny Wan2.2-TI2V-style pipeline, one per test module (``optimize`` wraps it once and reuses the wrapper)."""
    from vlmteach_fast.testing import tiny_ti2v_pipeline

    return tiny_ti2v_pipeline()


@pytest.fixture(autouse=True)
def _seed():
    random.seed(0)
    torch.manual_seed(0)
    yield


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a CUDA GPU; none is available on this machine")
    has_cuda = None
    for item in items:
        if "cuda" in item.keywords:
            if has_cuda is None:
                has_cuda = torch.cuda.is_available()
            if not has_cuda:
                item.add_marker(skip)


@pytest.fixture
def write_jsonl_suite(tmp_path):
    """``write(n, prompt, config_yaml)`` -> tmp_path holding ``suite.jsonl`` (RULER-style: n items ``t/i0..``, one
    random 32x32 first frame each) and ``cfg.yaml``: the small benchmark the subprocess tests run."""
    import json

    from PIL import Image

    def write(n: int, prompt: str, config_yaml: str):
        g = torch.Generator().manual_seed(0)
        for k in range(n):
            pixels = (torch.rand(32, 32, 3, generator=g) * 255).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / f"{k}.png")
        lines = [json.dumps({"index": f"i{k}", "task_name": "t", "category": "c", "prompt": prompt,
                             "input_image_path": f"{k}.png"}) for k in range(n)]
        (tmp_path / "suite.jsonl").write_text("\n".join(lines) + "\n")
        (tmp_path / "cfg.yaml").write_text(config_yaml)
        return tmp_path

    return write


@pytest.fixture
def fake_evalkit():
    """The stand-in VBVR-EvalKit (tests/fake_evalkit) in place of any installed one, for this test only."""
    import sys

    def ours():
        return [m for m in sys.modules if m == "vbvr_bench" or m.startswith("vbvr_bench.")]

    saved = {m: sys.modules.pop(m) for m in ours()}
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_evalkit")
    sys.path.insert(0, path)
    try:
        from vbvr_bench import evaluators

        evaluators.CALLS.clear()
        yield evaluators
    finally:
        sys.path.remove(path)
        for m in ours():
            del sys.modules[m]
        sys.modules.update(saved)
