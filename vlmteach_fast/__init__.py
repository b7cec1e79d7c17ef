"""vlmteach_fast: a VLM teacher's differentiable "Yes" likelihood trains a per-instance LoRA on a frozen video model.

Layering (docs/architecture.md): kernels/ and csrc/ below ``ops`` below ``nn`` / ``reasoner`` / ``teacher`` below ``optimize``.
Importing never fails because a compiled part is missing: ``vlmteach_fast._ext`` warns once and the ops fall back.
"""

__version__ = "0.1.0"

from . import ops  # noqa: E402  (registers the vlmteach_fast:: torch.library ops)
from .nn import FusedLoRALinear, FuseReport, fuse_peft_lora, unfuse_peft_lora  # noqa: E402
from .ops import lora_linear  # noqa: E402

# The method's entry points import diffusers / transformers; they load on first use (PEP 562) so that
# `import vlmteach_fast` (and the ops) stay light.
_LAZY = {
    "optimize": "optimization", "OptimizeConfig": "optimization", "OptimizeResult": "optimization",
    "StepInfo": "optimization",
    "best_of_n": "baselines", "vlm_as_solver": "baselines", "baseline": "baselines", "MethodResult": "baselines",
    "Budget": "cost", "CostRecord": "cost", "SamplingConfig": "instance",
    "Reasoner": "reasoner", "LoRASpec": "reasoner", "LightDecoderConfig": "reasoner",
    "VLMTeacher": "teacher", "Queries": "teacher", "RewardConfig": "teacher",
}

__all__ = ["ops", "lora_linear", "FusedLoRALinear", "FuseReport", "fuse_peft_lora", "unfuse_peft_lora",
           "__version__", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'vlmteach_fast' has no attribute {name!r}")
