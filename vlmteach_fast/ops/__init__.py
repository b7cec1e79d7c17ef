"""Ops: input checks, backend dispatch (triton | cuda | cpu | reference) and autograd, one file per op."""

from .dispatch import (BACKENDS, available_backends, get_backend, select_backend, select_backend_for_shape,
                       use_backend)
from .lora import lora_linear

__all__ = ["lora_linear", "BACKENDS", "available_backends", "get_backend", "select_backend",
           "select_backend_for_shape", "use_backend"]
