"""Benchmark helpers shared by bench/*.py: device choice, synchronisation, memory accounting."""

import os

import torch

if torch.version.cuda is None:  # as in tests/: Triton on CPU tensors only through the interpreter
    os.environ.setdefault("TRITON_INTERPRET", "1")
