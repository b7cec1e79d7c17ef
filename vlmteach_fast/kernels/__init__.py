"""Triton kernels; importing needs triton (``vlmteach_fast._ext`` guards it).

The sources live in the repository's top-level ``kernels/`` folder, which has no ``__init__.py`` so that running from
the repository root never shadows an installed package named ``kernels`` (transformers imports the hub's). Each
module here is a symbolic link to its source there; wheels and sdists carry the file itself.
"""

from .lora import lora_bwd_triton, lora_fwd_triton

__all__ = ["lora_fwd_triton", "lora_bwd_triton"]
