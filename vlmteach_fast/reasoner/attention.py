"""Which attention kernel the denoiser runs: a name for diffusers' attention dispatcher, checked once, applied per step.

diffusers (>= 0.35) routes the attention of its newer transformers (Wan among them) through
``diffusers.models.attention_dispatch.dispatch_attention_fn``, whose backend is picked by the ``attention_backend``
context manager: ``"native"`` (torch's ``scaled_dot_product_attention``, which itself picks flash / memory-efficient /
cuDNN / math), ``"xformers"``, ``"flash"`` (the flash-attn package), ``"_native_flash"``, ... The reasoner enters that
context inside each denoising step (``Reasoner._one_step``), so a checkpointed step's recomputation in the backward
pass runs the same kernel as its forward (a different kernel would save different tensors and fail the checkpoint's
check).

The default is ``"native"``: it runs everywhere, CPU included (xformers has no CPU kernels). Which backend is fastest
for a model's forward *and* backward on a given GPU is what ``bench/gpu_check.sh`` step 6 measures; the default is
meant to follow that measurement (docs/attention.md).
"""

from __future__ import annotations

import contextlib

__all__ = ["DEFAULT_ATTENTION_BACKEND", "attention_backend_names", "check_attention_backend",
           "attention_backend_available", "use_attention_backend"]

DEFAULT_ATTENTION_BACKEND = "native"


def _dispatch():
    """diffusers' dispatcher module, or None when this diffusers version has none (then only "native" exists)."""
    try:
        from diffusers.models import attention_dispatch
    except ImportError:
        return None
    return attention_dispatch if hasattr(attention_dispatch, "attention_backend") else None


def attention_backend_names() -> list[str]:
    """Backend names this diffusers version accepts, without the ``*_hub`` ones (those download kernels from the
    Hugging Face Hub at run time; nothing in this library downloads code)."""
    mod = _dispatch()
    if mod is None:
        return [DEFAULT_ATTENTION_BACKEND]
    return sorted(b.value for b in mod.AttentionBackendName if not b.value.endswith("_hub"))


def check_attention_backend(name) -> str:
    """Validate a backend *name* (not whether it can run here: see ``attention_backend_available``)."""
    names = attention_backend_names()
    if not isinstance(name, str) or name.lower() not in names:
        raise ValueError(f"`attention_backend` must be one of {names}, got {name!r}")
    return name.lower()


def attention_backend_available(name: str) -> tuple[bool, str]:
    """(usable here, reason). "native" always is; others need their package (xformers, flash-attn, ...) as
    diffusers' own requirement check sees it. Device support (e.g. xformers has no CPU kernels) shows only when
    a kernel runs."""
    name = check_attention_backend(name)
    mod = _dispatch()
    if name == DEFAULT_ATTENTION_BACKEND:
        return True, "torch scaled_dot_product_attention"
    if mod is None:  # unreachable: only "native" is a valid name then
        return False, "this diffusers version has no attention dispatcher"
    try:
        mod._check_attention_backend_requirements(mod.AttentionBackendName(name))
    except (RuntimeError, ImportError) as err:
        return False, str(err).splitlines()[0]
    return True, "requirements met"


@contextlib.contextmanager
def use_attention_backend(name: str):
    """Context in which diffusers' dispatched attention uses backend ``name`` (a checked name). A no-op for
    "native" on a diffusers without a dispatcher (its attention is torch SDPA already)."""
    mod = _dispatch()
    if mod is None:
        yield
        return
    with mod.attention_backend(name):
        yield
