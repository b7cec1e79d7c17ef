"""vlmteach_fast: a VLM teacher's differentiable "Yes" likelihood trains a per-instance LoRA on a frozen video model.

Layering (DESIGN.md): kernels/ and csrc/ below ``ops`` below ``nn`` / ``reasoner`` / ``teacher`` below ``optimize``.
Importing never fails because a compiled part is missing: ``vlmteach_fast._ext`` warns once and the ops fall back.
"""

__version__ = "0.1.0"
