"""Benchmark helpers shared by bench/*.py: device choice, synchronisation, memory accounting."""

import os

import pytest
import torch

if torch.version.cuda is None:  # as in tests/: Triton on CPU tensors only through the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Record torch / Triton / CUDA versions and the backends in the benchmark JSON's machine_info.
from vlmteach_fast.evaluate.throughput import pytest_benchmark_update_machine_info  # noqa: E402,F401


@pytest.fixture(scope="module")
def one_cpu_thread():
    """One torch thread on the CPU for a module's benchmarks (tiny models are overhead-bound, and with two threads
    OpenMP waiting made steps up to 100x slower whenever another process used a core); GPU runs keep the setting."""
    before = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
