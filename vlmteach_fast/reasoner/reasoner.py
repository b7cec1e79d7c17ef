"""``Reasoner``: a frozen diffusers video pipeline plus one trainable LoRA, with a differentiable prediction.

Recipe, shared by every model family (diffusers' numbered-recipe idiom):
1. ``from_pipeline``: pick the family, freeze every component (eval mode, requires_grad False), inject the
   LoRA (PEFT format; fused layers when available).
2. ``prepare``: check inputs, encode text / image conditions once, fix the initial noise (seeded CPU generator).
3. ``predict``: denoise from that noise. ``one_step``: the x0 estimate of a single evaluation from pure noise
   (flow matching: x0 = x - sigma * v at sigma = 1; CogVideoX: the DDIM x0 estimate at the first timestep).
   ``k_step``: T Euler steps; the first T - K run under ``torch.no_grad()`` (no graph is built at all), each of the
   last K runs inside ``torch.utils.checkpoint(use_reentrant=False)`` so only its input latents are kept and its
   activations are recomputed in the backward pass: memory ~ one step's activations + K latents, not K steps'.
4. ``sample``: the same loop without gradient, then the full VAE decode.
Gradients can only reach the LoRA: it is the only thing with ``requires_grad=True``.
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass

import torch
from torch.utils.checkpoint import checkpoint as _checkpoint

from ..checks import check_int, check_number
from ..cost import DenoiserCost, denoiser_cost, evals_per_step
from .attention import (DEFAULT_ATTENTION_BACKEND, attention_backend_available, check_attention_backend,
                        use_attention_backend)
from .cogvideox import CogVideoXFamily
from .family import PreparedInstance, VideoFamily
from .light_decoder import LightDecoder, LightDecoderConfig
from .lora import (LoRASpec, bypass_lora, inject_lora, lora_named_parameters, reset_lora, restore_lora,
                   save_lora_adapter, snapshot_lora)
from .ltx import LTXFamily
from .wan import WanFamily

__all__ = ["Reasoner", "PredictOutput", "SampleOutput", "ReasonerUsage", "SUPPORTED_PIPELINES", "family_for"]

_FAMILIES: tuple[type[VideoFamily], ...] = (WanFamily, CogVideoXFamily, LTXFamily)
SUPPORTED_PIPELINES: tuple[str, ...] = tuple(c for a in _FAMILIES for c in a.pipeline_classes)


def family_for(pipe) -> VideoFamily:
    """The family for ``pipe``; ``TypeError`` listing the supported pipeline classes otherwise."""
    cls_name = type(pipe).__name__
    for family_cls in _FAMILIES:
        if cls_name in family_cls.pipeline_classes:
            return family_cls(pipe)
    raise TypeError(
        f"`pipe` must be one of the supported diffusers pipelines {list(SUPPORTED_PIPELINES)}, got {cls_name}"
    )


def _check_lora_steps(lora_steps, steps: int, grad_steps: int) -> None:
    if lora_steps is None:
        return
    check_int("lora_steps", lora_steps)
    if not grad_steps <= lora_steps <= steps:
        raise ValueError(f"`lora_steps` must be None or between grad_steps={grad_steps} and steps={steps} (the "
                         f"gradient reaches only the steps the adapter acts on), got {lora_steps}")


def _resolve_checkpoint(checkpoint, grad_steps: int):
    """``predict``'s ``checkpoint`` argument: None means True when more than one step carries gradient (with a
    single step there is nothing to save)."""
    if checkpoint is None:
        return grad_steps > 1
    if checkpoint not in (True, False, "all_but_last"):
        raise ValueError(f"`checkpoint` must be True, False, 'all_but_last' or None, got {checkpoint!r}")
    return checkpoint


@dataclass
class PredictOutput:
    """``latents``: (B, C, F_lat, h, w) float32 clean-sample estimate, differentiable w.r.t. the LoRA parameters
    when ``predict`` ran with grad enabled. ``cost``: its ``DenoiserCost`` (forward evaluations, 2 per guided step;
    the evaluations a backward pass will go through and recompute), what ``CostMeter.count_backward`` takes."""

    latents: torch.Tensor
    cost: DenoiserCost
    grad_steps: int
    steps: int

    @property
    def denoiser_evals(self) -> int:
        """Transformer calls run forward (``cost.forward``)."""
        return self.cost.forward


@dataclass
class SampleOutput:
    """``frames``: (B, F, 3, H, W) float32 in [0, 1] (None when ``decode=False``); ``latents``: (B, C, F_lat, h, w)."""

    frames: torch.Tensor | None
    latents: torch.Tensor
    denoiser_evals: int = 0


@dataclass
class ReasonerUsage:
    """Running totals over the reasoner's life (cost accounting): transformer evaluations (2 per guided step) and
    full-VAE decodes through :meth:`Reasoner.decode`."""

    denoiser_evals: int = 0
    vae_decodes: int = 0


class Reasoner:
    """A diffusers video pipeline turned into a frozen backbone with one trainable, resettable LoRA.

    Build with :meth:`from_pipeline`. The pipeline is modified in place (LoRA injected, components frozen).
    """

    def __init__(self, pipe, family: VideoFamily, spec: LoRASpec, lora_config, fuse_report):
        self.pipe = pipe
        self.family = family
        self.lora_spec = spec
        self.lora_config = lora_config
        self.fuse_report = fuse_report
        self.counters = ReasonerUsage()
        self._light_decoders: dict[str, LightDecoder] = {}
        self.attention_backend = DEFAULT_ATTENTION_BACKEND
        if spec.init_seed is not None:  # the same fresh adapter in every process: reproducible runs
            reset_lora(self.transformer, spec.adapter_name, spec.init_seed)
        self._initial = snapshot_lora(self.transformer, spec.adapter_name)

    # ----- 1. construction -----

    @classmethod
    def from_pipeline(cls, pipe, lora: LoRASpec | None = None) -> "Reasoner":
        """Wrap ``pipe`` (one of :data:`SUPPORTED_PIPELINES`) and add a fresh LoRA described by ``lora``."""
        if lora is None:
            lora = LoRASpec()
        if not isinstance(lora, LoRASpec):
            raise TypeError(f"`lora` must be a LoRASpec, got {type(lora).__name__}")
        family = family_for(pipe)
        for name, component in pipe.components.items():
            if isinstance(component, torch.nn.Module):
                # Frozen models run in eval mode: built-from-config modules start in train mode and dropout
                # would make two identical calls differ.
                component.eval()
                component.requires_grad_(False)
        targets = lora.target_modules
        if targets is None:
            targets = family.attention_targets + (family.ffn_targets if lora.include_ffn else ())
        config, report = inject_lora(family.transformer, lora, targets)
        return cls(pipe, family, lora, config, report)

    def set_attention_backend(self, name: str) -> None:
        """Run the denoiser's attention with diffusers' dispatcher backend ``name`` ("native" = torch SDPA, the
        default; "xformers", "flash", "_native_flash", ... where installed; see ``reasoner/attention.py``).
        ``ValueError`` for an unknown name, ``RuntimeError`` when its package is missing here."""
        name = check_attention_backend(name)
        ok, why = attention_backend_available(name)
        if not ok:
            raise RuntimeError(f"`attention_backend`={name!r} cannot be used here: {why}")
        self.attention_backend = name

    @property
    def transformer(self):
        return self.family.transformer

    @property
    def device(self) -> torch.device:
        """Where the denoiser runs."""
        return self.family.device

    def light_decoder(self, config: LightDecoderConfig | None = None) -> LightDecoder:
        """The :class:`LightDecoder` for ``config`` (None: defaults), built once per config and kept on this
        reasoner, so its linear fit (or cache load) is paid once per model, not once per ``optimize`` call."""
        config = LightDecoderConfig() if config is None else config
        key = repr(config)
        if key not in self._light_decoders:
            self._light_decoders[key] = LightDecoder(self, config)
        return self._light_decoders[key]

    def usage(self) -> ReasonerUsage:
        """A copy of the running totals (``CostMeter`` takes deltas of two of these)."""
        return dataclasses.replace(self.counters)

    # ----- 2. conditions -----

    def prepare(self, prompt: str, image=None, negative_prompt: str | None = None, *, num_frames: int, height: int,
                width: int, seed: int = 0, guidance_scale: float = 1.0, max_sequence_length: int = 512,
                offload_text_encoder: bool = False) -> PreparedInstance:
        """Encode one instance's conditions and fix its initial noise.

        Args:
            prompt: the task prompt.
            image: first frame for image-to-video pipelines: PIL RGB of size (width, height) or a float tensor
                (3, H, W) / (1, 3, H, W) in [0, 1]. Must be None for text-to-video pipelines.
            negative_prompt: used only when ``guidance_scale > 1`` (empty string when None).
            num_frames, height, width: video geometry; the family checks VAE/patch compatibility.
            seed: seeds the CPU generator of the initial noise (the same seed gives the same noise everywhere).
            guidance_scale: classifier-free guidance default for this instance; 1 (off) suits distilled models.
            max_sequence_length: text tokens (padded) fed to the text encoder.
            offload_text_encoder: keep the text encoder on the CPU outside this call (moved to the denoiser's
                device for the prompt only): its weights (UMT5-XXL: 10.6 GiB in bf16) leave the device for the run.
        """
        if not isinstance(prompt, str) or not prompt:
            raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}")
        check_int("seed", seed, minimum=0)
        check_int("max_sequence_length", max_sequence_length)
        guidance_scale = self._check_guidance(guidance_scale)
        encoder = getattr(self.pipe, "text_encoder", None) if offload_text_encoder else None
        if encoder is not None:
            encoder.to(self.device)
        try:
            return self.family.prepare(prompt, image, negative_prompt, num_frames, height, width, seed,
                                       guidance_scale, max_sequence_length)
        finally:
            if encoder is not None:
                encoder.to("cpu")

    def reseed(self, prepared: PreparedInstance, seed: int) -> PreparedInstance | None:
        """``prepared`` with the initial noise of ``seed`` and the same encoded conditions, equal to
        ``prepare(..., seed=seed)``; None for families that draw conditions with the seed (CogVideoX, LTX image
        latents), where only ``prepare`` is exact."""
        self._check_prepared(prepared, None)
        check_int("seed", seed, minimum=0)
        return self.family.reseed(prepared, seed)

    @staticmethod
    def _check_guidance(g) -> float:
        return check_number("guidance_scale", g, minimum=1.0)  # 1 = no guidance

    def _check_prepared(self, prepared, guidance_scale):
        if not isinstance(prepared, PreparedInstance):
            raise TypeError(f"`prepared` must come from Reasoner.prepare, got {type(prepared).__name__}")
        if prepared.family != self.family.name:
            raise ValueError(f"`prepared` was made by a {prepared.family!r} reasoner, this one is {self.family.name!r}")
        g = prepared.guidance_scale if guidance_scale is None else self._check_guidance(guidance_scale)
        if g > 1.0 and prepared.negative_prompt_embeds is None:
            raise ValueError(
                f"`guidance_scale`={g} needs negative prompt embeddings: call prepare(..., guidance_scale > 1)"
            )
        return g

    # ----- 3. differentiable prediction -----

    def _one_step(self, prepared, latents, t, c, c_next, guidance_scale, blocks=False):
        # (c, c_next): the step's schedule coefficients (sigma -> next sigma for flow matching, abar_t -> abar_prev
        # for DDIM); plain floats, so a checkpointed recomputation sees exactly the same values.
        # Block checkpointing is switched on *inside* the step so that a checkpointed step's recomputation in the
        # backward pass runs the same blocks the same way (else its saved tensors would not match the forward's).
        # The attention backend is entered here too, for the same reason: recomputation must run the same kernel.
        with self._block_checkpointing(blocks), use_attention_backend(self.attention_backend):
            out = self.family.denoise(prepared, latents, t, guidance_scale)
        return self.family.step(latents, out, c, c_next)

    @staticmethod
    def _steps_and_sigmas(steps, sigmas, default):
        """Resolve ``steps`` / ``sigmas`` into (T, sigmas or None), checking that they agree."""
        if sigmas is None:
            return (default if steps is None else steps), None
        try:
            sig = [float(s) for s in sigmas]
        except (TypeError, ValueError):
            raise TypeError(f"`sigmas` must be a sequence of numbers, got {sigmas!r}") from None
        if not sig or any(not (0.0 < s <= 1.0) for s in sig) or any(b >= a for a, b in zip(sig, sig[1:])):
            raise ValueError(f"`sigmas` must be strictly decreasing values in (0, 1], got {sig}")
        if steps is not None and steps != len(sig):
            raise ValueError(f"`steps`={steps} disagrees with len(sigmas)={len(sig)}; pass one or make them match")
        return len(sig), sig

    def plain_prefix(self, prepared: PreparedInstance, steps: int, lora_steps: int, *,
                     guidance_scale: float | None = None, sigmas=None, refresh: bool = False) -> torch.Tensor:
        """The latents (B, C, F_lat, h, w) after the first ``steps - lora_steps`` of ``steps`` sampling steps, run by
        the frozen model (adapter bypassed, no gradient). They do not depend on the adapter, so they are computed
        once per instance and schedule and kept on ``prepared``; ``refresh`` recomputes them (to time them)."""
        guidance_scale = self._check_prepared(prepared, guidance_scale)
        steps, sigmas = self._steps_and_sigmas(steps, sigmas, None)
        check_int("steps", steps)
        _check_lora_steps(lora_steps, steps, 1)
        timesteps, coeffs = self.family.schedule(steps, prepared, sigmas)
        if refresh:
            prepared.__dict__.pop("_plain_prefix", None)
        return self._plain_prefix(prepared, timesteps, coeffs, steps - lora_steps, guidance_scale)

    def _plain_prefix(self, prepared, timesteps, coeffs, prefix: int, guidance_scale: float) -> torch.Tensor:
        key = (id(self.transformer), prefix, tuple(float(c) for c in coeffs[:prefix].flatten()), float(guidance_scale))
        cache = prepared.__dict__.setdefault("_plain_prefix", {})  # not a field: replace() / copies start empty
        hit = cache.get(key)
        if hit is not None and hit[0] is prepared.noise:
            return hit[1]
        latents = self.family.initial_latents(prepared)
        with torch.no_grad(), self.lora_bypassed():
            for i in range(prefix):
                t = timesteps[i].to(latents.device)
                latents = self._one_step(prepared, latents, t, float(coeffs[i, 0]), float(coeffs[i, 1]),
                                         guidance_scale)
                self.counters.denoiser_evals += evals_per_step(guidance_scale)
        cache[key] = (prepared.noise, latents)
        return latents

    def _run(self, prepared, steps, grad_steps, guidance_scale, checkpoint, callback=None, blocks=False,
             sigmas=None, lora_steps=None):
        timesteps, coeffs = self.family.schedule(steps, prepared, sigmas)
        per_step = evals_per_step(guidance_scale)
        prefix = 0 if lora_steps is None else steps - lora_steps
        if prefix > 0:  # the adapter acts on the last lora_steps steps only: the plain model's start, cached
            before = self.counters.denoiser_evals
            latents = self._plain_prefix(prepared, timesteps, coeffs, prefix, guidance_scale)
            ran = (self.counters.denoiser_evals - before) // per_step
        else:
            latents, ran = self.family.initial_latents(prepared), 0
        if not torch.is_grad_enabled():
            grad_steps = 0
        first_grad = steps - grad_steps
        checkpointed = 0
        for i in range(prefix, steps):
            t = timesteps[i].to(latents.device)
            s, s_next = float(coeffs[i, 0]), float(coeffs[i, 1])
            if i < first_grad:
                with torch.no_grad():
                    latents = self._one_step(prepared, latents, t, s, s_next, guidance_scale)
            elif checkpoint is True or (checkpoint == "all_but_last" and i < steps - 1):
                latents = _checkpoint(self._one_step, prepared, latents, t, s, s_next, guidance_scale, blocks,
                                      use_reentrant=False)
                checkpointed += 1
            else:
                latents = self._one_step(prepared, latents, t, s, s_next, guidance_scale, blocks)
            self.counters.denoiser_evals += per_step
            if callback is not None:
                callback(self, i, t, latents)
        ran += steps - prefix
        return self.family.finalize(prepared, latents), denoiser_cost(ran, guidance_scale, grad_steps, checkpointed)

    def predict(self, prepared: PreparedInstance, mode: str = "one_step", *, steps: int | None = None,
                grad_steps: int = 1, guidance_scale: float | None = None, checkpoint: bool | str | None = None,
                block_checkpointing: bool = False, sigmas=None, lora_steps: int | None = None) -> PredictOutput:
        """Differentiable clean-latent prediction from ``prepared``'s fixed noise.

        Args:
            prepared: from :meth:`prepare`.
            mode: ``"one_step"`` (one evaluation from pure noise and its x0 estimate, e.g. x0 = x - sigma * v at
                sigma = 1; the paper's optimization-time prediction, meaningful for step-distilled models, see
                docs/method.md) or ``"k_step"``.
            steps: T, the number of sampling steps (``k_step`` only; required there).
            grad_steps: K, how many of the last steps carry gradient, 1 <= K <= T (``k_step`` only).
            guidance_scale: overrides the prepared one; > 1 runs batched cond/uncond guidance.
            checkpoint: True checkpoints every gradient step; ``"all_but_last"`` all but the last one, whose
                activations the backward pass needs first anyway: it saves that step's recomputation (1/K of the
                recompute time) but keeps its activations alive while the reward (e.g. a VLM) runs forward and
                backward, so peak memory = reward + one step instead of max(reward, one step); False checkpoints
                none. None = True when K > 1 (with a single step there is nothing to save).
            block_checkpointing: also checkpoint each transformer block inside a step (diffusers' gradient
                checkpointing), trading a second recompute for the single step's activation peak.
            sigmas: flow-matching families only: a custom schedule (strictly decreasing, in (0, 1], before the
                scheduler's shift), e.g. the one a step-distilled model was trained with; its length is T.
            lora_steps: ``k_step`` only: the adapter acts on the last ``lora_steps`` of the T steps (K <= it <= T);
                the first T - lora_steps are the frozen model's, run once per instance and schedule and cached on
                ``prepared`` (they do not depend on the adapter), so later predictions skip them. None: all T.

        Returns:
            :class:`PredictOutput` with latents (B, C, F_lat, h, w) float32; decode with ``LightDecoder`` or
            :meth:`decode`.
        """
        guidance_scale = self._check_prepared(prepared, guidance_scale)
        if mode == "one_step":
            if steps not in (None, 1):
                raise ValueError(f"`steps` must be None or 1 for mode='one_step', got {steps!r}")
            if grad_steps != 1:
                raise ValueError(f"`grad_steps` must be 1 for mode='one_step', got {grad_steps!r}")
            steps, sigmas = self._steps_and_sigmas(1, sigmas, 1)
        elif mode == "k_step":
            steps, sigmas = self._steps_and_sigmas(steps, sigmas, None)
            if steps is None:
                raise ValueError("`steps` is required for mode='k_step' (the number of sampling steps T)")
            check_int("steps", steps)
            check_int("grad_steps", grad_steps)
            if grad_steps > steps:
                raise ValueError(f"`grad_steps` must be between 1 and steps={steps}, got {grad_steps}")
            _check_lora_steps(lora_steps, steps, grad_steps)
        else:
            raise ValueError(f"`mode` must be 'one_step' or 'k_step', got {mode!r}")
        checkpoint = _resolve_checkpoint(checkpoint, grad_steps)
        if mode == "one_step" and lora_steps not in (None, 1):
            raise ValueError(f"`lora_steps` must be None or 1 for mode='one_step', got {lora_steps!r}")
        latents, cost = self._run(prepared, steps, grad_steps, guidance_scale, checkpoint,
                                  blocks=bool(block_checkpointing), sigmas=sigmas, lora_steps=lora_steps)
        return PredictOutput(latents=latents, cost=cost, grad_steps=grad_steps, steps=steps)

    @staticmethod
    def planned_cost(steps: int, grad_steps: int, guidance_scale: float, checkpoint=None,
                     lora_steps: int | None = None) -> DenoiserCost:
        """The ``DenoiserCost`` that ``predict(steps=T, grad_steps=K, checkpoint=..., lora_steps=...)`` will report
        once its plain prefix is cached, before running it (budgets decide whether one more step fits). ``steps`` = 1
        for ``one_step``."""
        checkpoint = _resolve_checkpoint(checkpoint, grad_steps)
        checkpointed = {True: grad_steps, "all_but_last": grad_steps - 1, False: 0}[checkpoint]
        return denoiser_cost(steps if lora_steps is None else lora_steps, guidance_scale, grad_steps, checkpointed)

    @contextlib.contextmanager
    def _block_checkpointing(self, enabled: bool):
        tr = self.transformer
        if not enabled or not torch.is_grad_enabled():
            yield
            return
        was = getattr(tr, "gradient_checkpointing", False)
        tr.enable_gradient_checkpointing(
            gradient_checkpointing_func=lambda module, *args: _checkpoint(module.__call__, *args, use_reentrant=False)
        )
        try:
            yield
        finally:
            if not was:
                tr.disable_gradient_checkpointing()

    # ----- 4. final sample -----

    @torch.no_grad()
    def sample(self, prepared: PreparedInstance, steps: int | None = None, *, guidance_scale: float | None = None,
               decode: bool = True, callback_on_step_end=None, sigmas=None,
               lora_steps: int | None = None) -> SampleOutput:
        """Few-step sampling without gradient, LoRA applied, then the full VAE decode.

        Args:
            prepared: from :meth:`prepare` (same noise as every ``predict``).
            steps: sampling steps T >= 1 (default 4, or len(sigmas)).
            guidance_scale: overrides the prepared one.
            decode: False returns latents only.
            callback_on_step_end: ``f(reasoner, step_index, timestep, latents)`` after each step.
            sigmas: custom flow-matching schedule, as in :meth:`predict`.
            lora_steps: the adapter acts on the last ``lora_steps`` steps only, as in :meth:`predict` (the cached
                plain steps before them call no callback). None: all.

        Returns:
            :class:`SampleOutput`; ``frames`` (B, F, 3, H, W) float32 in [0, 1].
        """
        guidance_scale = self._check_prepared(prepared, guidance_scale)
        steps, sigmas = self._steps_and_sigmas(steps, sigmas, 4)
        check_int("steps", steps)
        _check_lora_steps(lora_steps, steps, 1)
        latents, cost = self._run(prepared, steps, 0, guidance_scale, False, callback_on_step_end, sigmas=sigmas,
                                  lora_steps=lora_steps)
        frames = self.decode(latents) if decode else None
        return SampleOutput(frames=frames, latents=latents, denoiser_evals=cost.forward)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Full VAE decode: latents (B, C, F_lat, h, w) -> frames (B, F, 3, H, W) float32 in [0, 1], differentiable."""
        if not torch.is_tensor(latents) or latents.dim() != 5:
            got = tuple(latents.shape) if torch.is_tensor(latents) else type(latents).__name__
            raise ValueError(f"`latents` must be a 5-D tensor (B, C, F_lat, h, w), got {got}")
        self.counters.vae_decodes += 1
        return self.family.decode(latents)

    # ----- LoRA management -----

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        """The trainable parameters (PEFT ``lora_A`` / ``lora_B`` of this reasoner's adapter)."""
        return list(lora_named_parameters(self.transformer, self.lora_spec.adapter_name).values())

    def named_lora_parameters(self) -> dict[str, torch.nn.Parameter]:
        return lora_named_parameters(self.transformer, self.lora_spec.adapter_name)

    def reset_lora(self, seed: int | None = None) -> None:
        """Fresh adapter for a new instance: back to the initial weights (``seed=None``) or a re-drawn lora_A
        (``seed`` given); lora_B = 0 either way, so the output equals the frozen model's."""
        if seed is None:
            restore_lora(self.transformer, self.lora_spec.adapter_name, self._initial)
        else:
            reset_lora(self.transformer, self.lora_spec.adapter_name, seed)

    def lora_bypassed(self):
        """Context manager: inside it the denoiser runs as the frozen model alone (the adapter layers skip their LoRA
        path; its weights are kept). Best-of-N candidates and plain samples run this way, so they cost what they
        cost on a pipeline without an adapter."""
        return bypass_lora(self.transformer)

    def held_tensors(self) -> list[torch.Tensor]:
        """Tensors this reasoner keeps on the device besides its modules' (the adapter's initial weights, for
        ``reset_lora``): what a memory account must count (``vlmteach_fast.plan``)."""
        return list(self._initial.values())

    def snapshot_lora(self) -> dict[str, torch.Tensor]:
        """Detached copies of the adapter weights (best-so-far keeping)."""
        return snapshot_lora(self.transformer, self.lora_spec.adapter_name)

    def restore_lora(self, snapshot: dict[str, torch.Tensor]) -> None:
        """Load weights from :meth:`snapshot_lora` back into the adapter (in place; optimizers keep their params)."""
        restore_lora(self.transformer, self.lora_spec.adapter_name, snapshot)

    def save_adapter(self, directory) -> str:
        """Write the adapter so that a stock ``type(pipe).from_pretrained(...).load_lora_weights(directory)`` loads
        it (``pytorch_lora_weights.safetensors`` + metadata, and peft's ``adapter_config.json``); atomic."""
        return save_lora_adapter(self.pipe, self.transformer, self.lora_spec.adapter_name, self.lora_config,
                                 directory)
