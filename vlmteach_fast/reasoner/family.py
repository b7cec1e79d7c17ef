"""What a model family provides, and the flow-matching step math they share.

A family turns one diffusers pipeline into four pure functions of tensors: encode the conditions of an
instance (``prepare``), evaluate the denoiser on latents at one step (``denoise``), move latents one step
(``step``), and decode latents with the full VAE (``decode``). The denoising loop itself lives in
``reasoner.Reasoner`` and is the same for every family: it never calls ``scheduler.step``, whose internal step
counter would advance twice when a checkpointed step is recomputed in the backward pass.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import numpy as np
import torch

from ..checks import check_int

__all__ = ["PreparedInstance", "VideoFamily"]


@dataclass
class PreparedInstance:
    """Conditions of one instance, encoded once and reused by every ``predict`` and by the final ``sample``.

    Attributes:
        family: family name (``"wan"``, ...) that made it; another family's reasoner refuses it.
        noise: (B, C, F_lat, h, w) float32 initial noise from a seeded CPU generator.
        prompt_embeds: (B, L, D) text conditions in the transformer's dtype.
        negative_prompt_embeds: (B, L, D) or None; present only when prepared with ``guidance_scale > 1``.
        conditions: family-specific tensors (image latents, masks, image embeddings), all without grad.
        num_frames, height, width, seed, guidance_scale: what ``prepare`` was called with.
    """

    family: str
    noise: torch.Tensor
    prompt_embeds: torch.Tensor
    negative_prompt_embeds: torch.Tensor | None
    num_frames: int
    height: int
    width: int
    seed: int
    guidance_scale: float = 1.0
    conditions: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_latent_frames(self) -> int:
        return self.noise.shape[2]


class VideoFamily:
    """Base class: one subclass per model family (Wan, CogVideoX, LTX). Flow-matching (rectified flow) by default.

    Subclasses set ``name``, ``pipeline_classes`` (class names they accept), ``attention_targets`` and
    ``ffn_targets`` (default LoRA targets), and implement ``prepare``, ``model_input`` and ``decode``.
    """

    name = "base"
    # True: image-to-video (prepare needs `image`); False: text-to-video (no image); None: either (Wan2.2 TI2V)
    is_i2v: bool | None = True
    pipeline_classes: tuple[str, ...] = ()
    attention_targets: tuple[str, ...] = ()
    ffn_targets: tuple[str, ...] = ()

    def __init__(self, pipe):
        self.pipe = pipe

    @property
    def transformer(self):
        return self.pipe.transformer

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.dtype

    # ----- schedule and step: rectified flow x_t = (1 - sigma) x0 + sigma * eps, model predicts v = eps - x0 -----

    def schedule(self, steps: int, prepared: PreparedInstance,
                 sigmas: list[float] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(timesteps (steps,), coefficients (steps, 2))``: step i moves from ``coefficients[i, 0]`` to
        ``coefficients[i, 1]`` (sigma -> next sigma for flow matching), from a copy of the pipeline's scheduler.

        The copy keeps the pipeline's scheduler state untouched, so ``pipe(...)`` still works afterwards.
        Families whose pipelines pass custom sigmas / a resolution-dependent shift override ``scheduler_kwargs``.
        ``sigmas`` (user-given, e.g. a step-distilled model's schedule) go to ``set_timesteps(sigmas=...)``, which
        applies the scheduler's shift to them as it does for diffusers pipelines.
        Only the schedule is taken from the scheduler; the update is always the Euler step below. For
        FlowMatchEulerDiscreteScheduler that is exactly ``pipe(...)``; a multistep solver (UniPC with
        ``use_flow_sigmas``, Wan2.1's hub default) keeps state across steps that a checkpointed step could not
        replay, so such pipelines are sampled with Euler on the same sigmas (measured max frame difference to
        ``pipe(...)`` on the tiny Wan at 20 steps: 0.10).
        """
        check_int("steps", steps)
        sched = copy.deepcopy(self.pipe.scheduler)
        kwargs = self.scheduler_kwargs(steps, prepared, sigmas)
        with np.errstate(divide="ignore", invalid="ignore"):  # a degenerate stretch is handled just below
            sched.set_timesteps(device="cpu", **kwargs)
        sigmas = getattr(sched, "sigmas", None)
        if sigmas is not None and not torch.isfinite(sigmas).all() and getattr(sched.config, "shift_terminal", None):
            # `shift_terminal` (LTX-Video: 0.1) stretches the shifted sigmas s to 1 - (1 - s) * (1 - terminal) /
            # (1 - s_last). A schedule whose last sigma is 1 -- the one-step prediction from pure noise, [1.0] --
            # makes that 0 / 0. The stretch maps sigma 1 to 1 in every schedule, so without it the one step starts
            # where every multi-step schedule starts (sigma 1 -> 0), which is what the one-step estimate needs.
            sched.register_to_config(shift_terminal=None)
            sched.set_timesteps(device="cpu", **kwargs)
            sigmas = sched.sigmas
        if sigmas is not None and not torch.isfinite(sigmas).all():
            raise ValueError(
                f"scheduler {type(sched).__name__} gives a non-finite sigma schedule for {steps} step(s) "
                f"({sigmas.tolist()}) with config {dict(sched.config)}"
            )
        if sigmas is None or len(sigmas) != steps + 1:
            raise TypeError(
                f"scheduler {type(sched).__name__} has no flow-matching sigma schedule of length steps + 1; "
                "use a FlowMatchEulerDiscreteScheduler (or a scheduler with use_flow_sigmas=True)"
            )
        sigmas = sigmas.to(torch.float32)
        return sched.timesteps[:steps].to(torch.float32), torch.stack([sigmas[:-1], sigmas[1:]], dim=1)

    def scheduler_kwargs(self, steps: int, prepared: PreparedInstance, sigmas: list[float] | None = None) -> dict:
        """Arguments of ``scheduler.set_timesteps`` for ``steps`` steps (default: the count, or the given sigmas)."""
        return {"num_inference_steps": steps} if sigmas is None else {"sigmas": list(sigmas)}

    def initial_latents(self, prepared: PreparedInstance) -> torch.Tensor:
        """Latents the loop starts from (default: the prepared noise)."""
        return prepared.noise

    def step(self, latents: torch.Tensor, model_output: torch.Tensor, sigma: float, sigma_next: float) -> torch.Tensor:
        """Euler step of the flow ODE in float32: ``x + (sigma_next - sigma) * v``; with sigma_next = 0 this is x0."""
        return latents.to(torch.float32) + (sigma_next - sigma) * model_output.to(torch.float32)

    # ----- geometry -----

    # (height, width) the family's diffusers pipeline uses when the caller gives none (its ``__call__`` defaults)
    default_size: tuple[int, int] = (480, 832)

    def size_multiple(self) -> tuple[int, int]:
        """(mult_h, mult_w): frame height / width must be multiples of these (VAE compression x patch size)."""
        raise NotImplementedError

    def fixed_size(self) -> tuple[int, int] | None:
        """The only (height, width) the checkpoint can make, or None when any multiple of ``size_multiple`` works."""
        return None

    def check_geometry(self, num_frames: int, height: int, width: int) -> None:
        """Raise ``ValueError`` naming the argument when the model cannot make (num_frames, height, width); called
        before any model work (the teacher's questions, the text encoder)."""
        self._check_video_geometry(num_frames, height, width, *self.size_multiple())
        fixed = self.fixed_size()
        if fixed is not None and (height, width) != fixed:
            raise ValueError(
                f"`height` and `width` must be {fixed} for this {type(self.pipe).__name__} checkpoint (its learned "
                f"positional embeddings are sized for that resolution only), got ({height}, {width})"
            )

    def _check_video_geometry(self, num_frames: int, height: int, width: int, mult_h: int, mult_w: int) -> None:
        """The checks every family shares: ints >= 1, ``num_frames = k * temporal + 1`` (the VAE keeps the first
        frame and compresses the rest ``temporal``x), height / width multiples of VAE x patch size."""
        check_int("num_frames", num_frames)
        check_int("height", height)
        check_int("width", width)
        t = self.temporal
        if (num_frames - 1) % t:
            lo = (num_frames - 1) // t * t + 1
            raise ValueError(
                f"`num_frames` must be k * {t} + 1 (the VAE compresses time {t}x after the first frame), got "
                f"{num_frames}; nearest accepted values: {lo}, {lo + t}"
            )
        if height % mult_h or width % mult_w:
            raise ValueError(
                f"`height` and `width` must be multiples of ({mult_h}, {mult_w}) (VAE x patch size), "
                f"got ({height}, {width})"
            )

    # ----- to implement per family -----

    def prepare(self, prompt, image, negative_prompt, num_frames, height, width, seed, guidance_scale,
                max_sequence_length) -> PreparedInstance:
        raise NotImplementedError

    def reseed(self, prepared: PreparedInstance, seed: int) -> PreparedInstance | None:
        """``prepared`` with the initial noise of another ``seed``, its encoded conditions reused (what a user's
        Best-of-N does: encode the prompt and image once, draw N noises); None when this family draws part of its
        conditions with the seed's generator (then only a new ``prepare`` is exact)."""
        return None

    @staticmethod
    def seeded_noise(shape: tuple, seed: int, device) -> torch.Tensor:
        """float32 noise of ``shape`` from a seeded CPU generator: the same seed gives the same noise on every device
        (diffusers' ``randn_tensor``)."""
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed), dtype=torch.float32).to(device)

    # ----- the parts of prepare every family shares -----

    def _checked_prompt_embeds(self, prompt, image, negative_prompt, num_frames: int, height: int, width: int,
                               guidance_scale: float, max_sequence_length: int):
        """Check the geometry and the image (an image-to-video model needs one, a text-to-video one must not get
        one), then the pipeline's own ``encode_prompt`` without grad, the negative prompt only when guided. Returns
        what the pipeline returns (embeddings; LTX adds attention masks)."""
        self.check_geometry(num_frames, height, width)
        name = type(self.pipe).__name__
        if self.is_i2v is True and image is None:
            raise ValueError(f"`image` is required for {name} (image-to-video), got None")
        if self.is_i2v is False and image is not None:
            raise ValueError(f"`image` must be None for the text-to-video {name}; for image conditioning build the "
                             "reasoner from an image-to-video pipeline of the family")
        with torch.no_grad():
            return self.pipe.encode_prompt(
                prompt=prompt,
                negative_prompt=negative_prompt,
                do_classifier_free_guidance=guidance_scale > 1.0,
                num_videos_per_prompt=1,
                max_sequence_length=max_sequence_length,
                device=self.device,
            )

    def _prepared(self, noise, pos, neg, num_frames, height, width, seed, guidance_scale, conditions):
        """The ``PreparedInstance``: embeddings cast to the transformer's dtype, the negative one kept only when
        guided."""
        guided = guidance_scale > 1.0
        return PreparedInstance(
            family=self.name,
            noise=noise,
            prompt_embeds=pos.to(self.dtype),
            negative_prompt_embeds=neg.to(self.dtype) if guided else None,
            num_frames=num_frames,
            height=height,
            width=width,
            seed=seed,
            guidance_scale=float(guidance_scale),
            conditions=conditions,
        )

    def model_input(self, prepared: PreparedInstance, latents: torch.Tensor, t: torch.Tensor):
        """``(hidden_states, timestep, extra_kwargs)`` for one conditional denoiser call on ``latents``."""
        raise NotImplementedError

    def uncond_extra(self, prepared: PreparedInstance, extra: dict) -> dict:
        """The unconditional half's extra kwargs (default: the same; e.g. LTX swaps in the negative text mask)."""
        return extra

    def model_output(self, prepared: PreparedInstance, out: torch.Tensor) -> torch.Tensor:
        """Transformer output -> (B, C, F_lat, h, w) (default: already that shape; LTX unpacks tokens)."""
        return out

    def finalize(self, prepared: PreparedInstance, latents: torch.Tensor) -> torch.Tensor:
        """Latents after the last step, before decoding (e.g. put the conditioning frame back). Default: unchanged."""
        return latents

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Full VAE decode of normalized latents (B, C, F_lat, h, w) -> frames (B, F, 3, H, W) float32 in [0, 1]."""
        raise NotImplementedError

    def pixel_frame_index(self, num_latent_frames: int) -> list[int]:
        """For each latent frame, the decoded frame it stands for (used to align light and full decodes)."""
        raise NotImplementedError

    # ----- shared -----

    def denoise(self, prepared: PreparedInstance, latents: torch.Tensor, t: torch.Tensor,
                guidance_scale: float) -> torch.Tensor:
        """One denoiser evaluation (two when guided, batched as cond/uncond) -> output (B, C, F_lat, h, w) fp32."""
        hidden, timestep, extra = self.model_input(prepared, latents, t)
        enc = prepared.prompt_embeds
        guided = guidance_scale > 1.0
        if guided:
            # One batched call over [cond, uncond] instead of two calls: the denoiser's weights are read once.
            hidden = torch.cat([hidden, hidden])
            timestep = torch.cat([timestep, timestep])
            enc = torch.cat([enc, prepared.negative_prompt_embeds])
            unc = self.uncond_extra(prepared, extra)
            extra = {k: (torch.cat([v, unc[k]]) if torch.is_tensor(v) else v) for k, v in extra.items()}
        # the prompt embeddings were cast to the transformer's dtype in `prepare`; asking the transformer for its dtype
        # walks every submodule (diffusers' layerwise-casting check), ~2 ms per call on the 4-block toy model
        out = self.transformer(
            hidden_states=hidden.to(enc.dtype), timestep=timestep, encoder_hidden_states=enc, return_dict=False,
            **extra,
        )[0]
        out = self.model_output(prepared, out.to(torch.float32))
        if guided:
            cond, uncond = out.chunk(2)
            out = uncond + guidance_scale * (cond - uncond)
        return out
