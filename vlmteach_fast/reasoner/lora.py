"""The per-instance LoRA on a frozen video transformer: spec, injection, freezing, reset/snapshot/restore, saving.

Everything stays in PEFT format, what diffusers and peft users already know: the adapter is injected with diffusers'
``add_adapter`` (peft's ``inject_adapter_in_model`` underneath), parameters keep PEFT's names
(``...to_q.lora_A.<adapter>.weight``), and files are written with the pipeline class's own ``save_lora_weights`` plus
the LoRA config as metadata, so a stock pipeline's ``load_lora_weights`` reproduces the adapter exactly
(without the metadata an adapter whose alpha differs from its rank loads with the wrong scale, silently).

Reset, snapshot and restore go through parameter *names*, not peft layer objects, so they work the same whether the
PEFT layers were swapped for fused ones (``vlmteach_fast.nn.fuse_peft_lora`` keeps state-dict keys) or not.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from dataclasses import dataclass, field

import torch

from ..checks import check_int
from ..io_atomic import MANIFEST, atomic_dir

__all__ = ["LoRASpec", "inject_lora", "lora_named_parameters", "snapshot_lora", "restore_lora", "reset_lora",
           "save_lora_adapter"]


@dataclass
class LoRASpec:
    """How the per-instance LoRA is built.

    ``target_modules=None`` takes the model family's default (its attention projections, plus its feed-forward
    layers when ``include_ffn``); an explicit list is passed to peft unchanged.
    """

    rank: int = field(default=16, metadata={"help": "LoRA rank r (>= 1)."})
    alpha: float | None = field(default=None, metadata={"help": "LoRA alpha; None means alpha = rank (scale 1)."})
    target_modules: tuple[str, ...] | None = field(
        default=None, metadata={"help": "Module names or suffixes to adapt; None = the family's default."}
    )
    include_ffn: bool = field(default=False, metadata={"help": "Also adapt the feed-forward layers (family default)."})
    adapter_name: str = field(default="reasoner", metadata={"help": "PEFT adapter name inside the transformer."})
    fused: bool = field(
        default=True,
        metadata={"help": "Swap PEFT LoRA layers for vlmteach_fast.nn fused ones when that module is available."},
    )
    last_blocks: int | None = field(default=None, metadata={
        "help": "Adapt only the last N transformer blocks; None: all. Blocks below the first adapted one keep no "
                "activations for backward and the backward stops there (docs/planning.md)."})
    init_seed: int | None = field(default=0, metadata={
        "help": "Seed of lora_A's initial draw, so every process starts from the same adapter (the first AdamW step "
                "is nearly a sign step: a different lora_A makes a different run); None: torch's global RNG."})

    def __post_init__(self):
        check_int("rank", self.rank)
        check_int("init_seed", self.init_seed, minimum=0, optional=True)
        check_int("last_blocks", self.last_blocks, optional=True)
        if self.alpha is None:
            self.alpha = float(self.rank)
        if not isinstance(self.alpha, (int, float)) or not math.isfinite(self.alpha) or self.alpha <= 0:
            raise ValueError(f"`alpha` must be a finite number > 0 (or None for alpha = rank), got {self.alpha!r}")
        if self.target_modules is not None:
            if isinstance(self.target_modules, str):
                self.target_modules = (self.target_modules,)
            self.target_modules = tuple(self.target_modules)
            if not self.target_modules or not all(isinstance(t, str) and t for t in self.target_modules):
                raise ValueError(
                    f"`target_modules` must be None or a non-empty list of module names, got {self.target_modules!r}"
                )
        if not isinstance(self.adapter_name, str) or not self.adapter_name or "." in self.adapter_name:
            raise ValueError(f"`adapter_name` must be a non-empty string without '.', got {self.adapter_name!r}")


def _is_lora_name(name: str, adapter_name: str) -> bool:
    return (".lora_A." in name or ".lora_B." in name) and f".{adapter_name}." in name + "."


def lora_named_parameters(module: torch.nn.Module, adapter_name: str) -> dict[str, torch.nn.Parameter]:
    """The adapter's parameters by PEFT name (``...lora_A.<adapter>.weight``), in module order."""
    return {n: p for n, p in module.named_parameters() if _is_lora_name(n, adapter_name)}


def inject_lora(transformer, spec: LoRASpec, target_modules: tuple[str, ...]):
    """Add a fresh LoRA to ``transformer`` in place and freeze everything else.

    Returns ``(lora_config, fuse_report)``; ``fuse_report`` is None when the layers stay plain PEFT.
    Afterwards exactly the adapter's parameters have ``requires_grad=True``; adapters that were active before
    (loaded with ``load_lora_weights``) stay active and frozen.
    """
    from peft import LoraConfig

    config = LoraConfig(
        r=spec.rank,
        lora_alpha=spec.alpha,
        target_modules=list(target_modules),
        lora_dropout=0.0,  # frozen models run in eval mode, where dropout would be inert anyway
        init_lora_weights=True,
        **_last_blocks_kwargs(transformer, spec.last_blocks),
    )
    # Adapters already loaded into the pipeline (e.g. a step-distillation LoRA) stay active beside ours:
    # add_adapter alone would activate only the new one.
    previous = list(transformer.active_adapters()) if getattr(transformer, "peft_config", None) else []
    try:
        transformer.add_adapter(config, adapter_name=spec.adapter_name)
    except ValueError as exc:
        if "not found" not in str(exc):
            raise
        raise ValueError(
            f"`target_modules` {list(target_modules)} matched no linear layer of {type(transformer).__name__} ({exc})"
        ) from None
    if previous:
        transformer.set_adapter(previous + [spec.adapter_name])
    params = lora_named_parameters(transformer, spec.adapter_name)
    if not params:
        raise ValueError(
            f"`target_modules` {list(target_modules)} matched no linear layer of {type(transformer).__name__}"
        )
    for p in transformer.parameters():
        p.requires_grad_(False)
    for p in params.values():
        p.requires_grad_(True)
    report = None
    if spec.fused:
        report = _try_fuse(transformer)
    return config, report


BLOCK_LISTS = ("blocks", "transformer_blocks")  # Wan; CogVideoX and LTX-Video


def _last_blocks_kwargs(transformer, last_blocks: int | None) -> dict:
    """peft's ``layers_to_transform`` / ``layers_pattern`` for the last ``last_blocks`` blocks ({} for all)."""
    if last_blocks is None:
        return {}
    name = next((n for n in BLOCK_LISTS if isinstance(getattr(transformer, n, None), torch.nn.ModuleList)), None)
    if name is None:
        raise ValueError(f"`last_blocks` needs a transformer with a block list ({' or '.join(BLOCK_LISTS)}); "
                         f"{type(transformer).__name__} has none")
    n = len(getattr(transformer, name))
    if last_blocks > n:
        raise ValueError(f"`last_blocks` must be <= the transformer's {n} blocks, got {last_blocks}")
    return {"layers_to_transform": list(range(n - last_blocks, n)), "layers_pattern": name}


def _try_fuse(transformer):
    # The fused layer is optional (a compiled or Triton kernel may be missing): plain PEFT is always correct.
    try:
        from vlmteach_fast.nn import fuse_peft_lora
    except ImportError:
        return None
    try:
        return fuse_peft_lora(transformer)
    except Exception as exc:  # a fused-layer bug must not break the reasoner: warn and keep plain PEFT
        warnings.warn(f"fuse_peft_lora failed ({type(exc).__name__}: {exc}); keeping plain PEFT LoRA layers")
        return None


@torch.no_grad()
def snapshot_lora(transformer, adapter_name: str) -> dict[str, torch.Tensor]:
    """Detached copies of the adapter's parameters (for best-so-far keeping); restore with :func:`restore_lora`."""
    return {n: p.detach().clone() for n, p in lora_named_parameters(transformer, adapter_name).items()}


@torch.no_grad()
def restore_lora(transformer, adapter_name: str, snapshot: dict[str, torch.Tensor]) -> None:
    """Copy ``snapshot`` (from :func:`snapshot_lora`) back into the adapter, in place; names and shapes must match."""
    params = lora_named_parameters(transformer, adapter_name)
    if set(snapshot) != set(params):
        missing = sorted(set(params) - set(snapshot))[:3]
        extra = sorted(set(snapshot) - set(params))[:3]
        raise ValueError(f"`snapshot` does not match the adapter: missing {missing}..., unexpected {extra}...")
    for name, p in params.items():
        if snapshot[name].shape != p.shape:
            raise ValueError(
                f"`snapshot[{name!r}]` must have shape {tuple(p.shape)}, got {tuple(snapshot[name].shape)}"
            )
        p.copy_(snapshot[name])
        p.grad = None


@torch.no_grad()
def reset_lora(transformer, adapter_name: str, seed: int | None = None) -> None:
    """Re-initialise the adapter the way peft does by default: ``lora_A`` Kaiming-uniform(a=sqrt(5)), ``lora_B`` 0.

    With lora_B = 0 the adapted model equals the frozen one whatever lora_A is, so a reset adapter is a no-op on the
    output. ``seed`` makes lora_A reproducible without touching the global RNG. Gradients are cleared.
    """
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    for name, p in lora_named_parameters(transformer, adapter_name).items():
        if ".lora_B." in name:
            p.zero_()
        else:
            # kaiming_uniform_(a=sqrt(5)) == U(-1/sqrt(fan_in), 1/sqrt(fan_in)); drawn on the CPU so a seed gives
            # the same values on every device.
            bound = 1.0 / math.sqrt(p.shape[1]) if p.dim() > 1 else 1.0
            w = torch.empty(p.shape, dtype=torch.float32).uniform_(-bound, bound, generator=gen)
            p.copy_(w.to(p.device, p.dtype))
        p.grad = None


@contextlib.contextmanager
def bypass_lora(transformer):
    """Run ``transformer`` as the frozen model alone inside the block: every PEFT adapter layer skips its LoRA path
    (no LoRA matmuls, so plain samples cost what they cost without an adapter), whatever the adapter's weights are.
    Each layer's enabled state and each parameter's ``requires_grad`` are restored on exit."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in transformer.modules() if isinstance(m, BaseTunerLayer)]
    enabled = [not m.disable_adapters for m in layers]
    grads = [(p, p.requires_grad) for m in layers for p in m.parameters()]
    for m in layers:
        m.enable_adapters(False)
    try:
        yield
    finally:
        for m, on in zip(layers, enabled):
            m.enable_adapters(on)
        for p, req in grads:
            p.requires_grad_(req)


ADAPTER_FILES = ("pytorch_lora_weights.safetensors", "adapter_config.json")


def save_lora_adapter(pipe, transformer, adapter_name: str, lora_config, directory: str | os.PathLike) -> str:
    """Write ``pytorch_lora_weights.safetensors`` that ``type(pipe)().load_lora_weights(directory)`` reproduces.

    The folder is written as one set (``io_atomic.atomic_dir``: a temporary folder with a manifest of
    every file and its SHA-256, moved into place whole), so a crash never leaves a half-written adapter or a mix of
    two where a loader looks. An existing adapter ``directory`` is replaced. Returns the path.
    """
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    if not state:
        raise RuntimeError(f"adapter {adapter_name!r} has no LoRA weights to save")
    with atomic_dir(directory, known=(*ADAPTER_FILES, MANIFEST)) as tmp:
        type(pipe).save_lora_weights(
            tmp,
            transformer_lora_layers=state,
            transformer_lora_adapter_metadata=lora_config.to_dict(),
            safe_serialization=True,
        )
        lora_config.save_pretrained(tmp)  # adapter_config.json beside it, for peft users
    return os.path.abspath(os.fspath(directory))
