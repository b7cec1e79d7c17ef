"""Benchmark helpers shared by bench/*.py: device choice, synchronisation, memory accounting."""

import os

import torch

if torch.version.cuda is None:  # as in tests/: Triton on CPU tensors only through the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")

# Record torch / Triton / CUDA versions and the backends in the benchmark JSON's machine_info.
from vlmteach_fast.evaluate.throughput import pytest_benchmark_update_machine_info  # noqa: E402,F401
