"""vlmteach_fast: a VLM teacher's differentiable "Yes" likelihood trains a per-instance LoRA on a frozen video model.

Layering (DESIGN.md): kernels/ and csrc/ below ``ops`` below ``nn`` / ``reasoner`` / ``teacher`` below ``optimize``.
Importing never fails because a compiled part is missing: ``vlmteach_fast._ext`` warns once and the ops fall back.
"""

__version__ = "0.1.0"

from . import ops  # noqa: E402  (registers the vlmteach_fast:: torch.library ops)
from .nn import FusedLoRALinear, FuseReport, fuse_peft_lora, unfuse_peft_lora  # noqa: E402
from .ops import lora_linear  # noqa: E402

__all__ = ["ops", "lora_linear", "FusedLoRALinear", "FuseReport", "fuse_peft_lora", "unfuse_peft_lora",
           "__version__"]
