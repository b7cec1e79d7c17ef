"""One instance, set up the same way for every method: reasoner, geometry, first frame, queries, prepared conditions.

``optimize`` and the baselines (``best_of_n``, ``vlm_as_solver``, ``baseline``) all start from ``setup_instance`` so
their costs and outputs are comparable: same noise seed, same geometry, same queries, same teacher.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .checks import check_int, check_number
from .first_frame import image_to_rgb
from .reasoner import LoRASpec, PreparedInstance, Reasoner
from .reasoner.attention import DEFAULT_ATTENTION_BACKEND, check_attention_backend
from .teacher import Queries, as_queries
from .teacher.queries import warn_unless_yes_no

__all__ = ["SamplingConfig", "InstanceSetup", "as_reasoner", "load_image", "check_image_tensor", "check_instance_geometry",
           "prepare_first_frame", "setup_instance", "score_frames"]

_REASONER_ATTR = "_vlmteach_reasoner"


@dataclass
class SamplingConfig:
    """Geometry and final-sampling settings shared by every method.

    Attributes:
        num_frames: frames of the video; must be k * 4 + 1 for Wan (the VAE compresses time 4x).
        height, width: frame size in pixels; None: the checkpoint's only size if it has one, else from the first
            frame (its aspect ratio, rounded down to the model's size multiples), else the pipeline's default
            (``vlmteach_fast.first_frame`` has the rules).
        fit: how a first frame of another size is brought to (height, width): "crop" (scale to cover keeping the
            aspect ratio, center crop) or "pad" (scale to fit, pad with black).
        max_area: when the size comes from the first frame, at most this many pixels (None: the frame's own area).
        seed: seed of the initial noise (CPU generator); Best-of-N uses seed, seed + 1, ...
        final_steps: sampling steps of the final video (few-step / distilled models: 4).
        guidance_scale: classifier-free guidance (1 = off, right for distilled models).
        negative_prompt: used only when guidance_scale > 1.
        max_sequence_length: text tokens fed to the text encoder.
        attention_backend: the denoiser's attention kernel, a diffusers attention-dispatcher backend name
            ("native" = torch SDPA; "xformers", "flash", ... where installed; ``Reasoner.set_attention_backend``).
    """

    num_frames: int = field(default=17, metadata={"help": "frames (k*4+1 for Wan)"})
    height: int | None = field(default=None, metadata={"help": "frame height; None = from the image or the model"})
    width: int | None = field(default=None, metadata={"help": "frame width; None = from the image or the model"})
    fit: str = field(default="crop", metadata={"help": "first frame of another size: 'crop' or 'pad'"})
    max_area: int | None = field(default=None, metadata={"help": "size from the image: at most this many pixels"})
    seed: int = field(default=0, metadata={"help": "noise seed"})
    final_steps: int = field(default=4, metadata={"help": "sampling steps of the final video"})
    guidance_scale: float = field(default=1.0, metadata={"help": "CFG scale, 1 = off"})
    negative_prompt: str | None = field(default=None, metadata={"help": "negative prompt (CFG only)"})
    max_sequence_length: int = field(default=512, metadata={"help": "text tokens"})
    offload_text_encoder: bool = field(default=False, metadata={
        "help": "keep the text encoder on the CPU except while it encodes the prompt (frees its weights on the "
                "device for the run; `vlmteach-fast plan` says when it is needed)"})
    attention_backend: str = field(default=DEFAULT_ATTENTION_BACKEND,
                                   metadata={"help": "denoiser attention: 'native' (torch SDPA), 'xformers', 'flash'"})

    def __post_init__(self):
        for name in ("num_frames", "final_steps", "max_sequence_length"):
            check_int(f"SamplingConfig.{name}", getattr(self, name))
        check_int("SamplingConfig.seed", self.seed, minimum=0)
        for name in ("height", "width", "max_area"):
            check_int(f"SamplingConfig.{name}", getattr(self, name), optional=True)
        check_number("SamplingConfig.guidance_scale", self.guidance_scale, minimum=1.0)  # 1 = off
        if not isinstance(self.offload_text_encoder, bool):
            raise TypeError(f"SamplingConfig.offload_text_encoder must be a bool, got {self.offload_text_encoder!r}")
        try:
            self.attention_backend = check_attention_backend(self.attention_backend)
        except ValueError as err:
            raise ValueError(f"SamplingConfig.{err}") from None
        from .first_frame import FIT_MODES

        if self.fit not in FIT_MODES:
            raise ValueError(f"SamplingConfig.fit must be one of {FIT_MODES}, got {self.fit!r}")


@dataclass
class InstanceSetup:
    """Everything a method needs about one instance (built by ``setup_instance``)."""

    reasoner: Reasoner
    prompt: str
    image: object  # PIL image / tensor / None, as given to Reasoner.prepare
    first_frame: torch.Tensor | None  # (3, H, W) float32 in [0, 1]
    queries: Queries
    prepared: PreparedInstance
    sampling: SamplingConfig
    geometry: dict = field(default_factory=dict)  # from ``prepare_first_frame``


def as_reasoner(pipe, lora: LoRASpec | None = None) -> Reasoner:
    """A ``Reasoner`` for ``pipe``: itself if it is one, else the one built for this pipeline before (cached on it,
    so repeated calls do not inject a second LoRA), else a new one with ``lora``."""
    if isinstance(pipe, Reasoner):
        return pipe
    cached = getattr(pipe, _REASONER_ATTR, None)
    if cached is not None:
        if lora is not None and cached.lora_spec != lora:
            raise ValueError(
                f"`pipe` already carries a reasoner LoRA {cached.lora_spec}; pass that Reasoner, or a fresh pipeline "
                f"for a different LoRA spec {lora}"
            )
        return cached
    reasoner = Reasoner.from_pipeline(pipe, lora=lora)
    setattr(pipe, _REASONER_ATTR, reasoner)
    return reasoner


def load_image(image):
    """Accept a PIL image, a tensor (3, H, W) (or (1, 3, H, W)) in [0, 1], a path, or None. Paths are opened and
    images of any mode become RGB scaled by their range (``first_frame.image_to_rgb``: 16-bit and float images too);
    tensors are checked (``check_image_tensor``)."""
    if image is None:
        return image
    if torch.is_tensor(image):
        check_image_tensor(image)
        return image
    if isinstance(image, (str, os.PathLike)):
        from PIL import Image, UnidentifiedImageError

        path = os.fspath(image)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"`image` file not found: {path!r}")
        try:
            with Image.open(path) as im:
                im.load()
                return image_to_rgb(im, f"`image` {path!r}")
        except (UnidentifiedImageError, OSError) as err:
            raise ValueError(f"`image` could not be read as an image: {path!r} ({err})") from err
    from PIL import Image

    if isinstance(image, Image.Image):
        return image_to_rgb(image)
    raise TypeError(f"`image` must be a PIL.Image, a (3, H, W) tensor in [0, 1], a file path or None, "
                    f"got {type(image).__name__}")


def check_image_tensor(image: torch.Tensor, name: str = "image") -> None:
    """A first-frame tensor must be (3, H, W) or (1, 3, H, W) float, channels first, finite, in [0, 1] (a small
    tolerance for rounding). Raises ValueError naming the shape or values that are wrong."""
    shape = tuple(image.shape)
    if image.dim() == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) != 3:
        raise ValueError(f"`{name}` must be a (3, H, W) tensor in [0, 1], got {image.dim()}-D shape {tuple(image.shape)}")
    if shape[0] != 3:
        hint = " (channels last: use image.permute(2, 0, 1))" if shape[-1] == 3 else ""
        raise ValueError(f"`{name}` must be a (3, H, W) tensor in [0, 1] (channels first), got shape "
                         f"{tuple(image.shape)}{hint}")
    if shape[1] == 0 or shape[2] == 0:
        raise ValueError(f"`{name}` is empty: shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise ValueError(f"`{name}` must be a float tensor in [0, 1], got dtype {image.dtype} (divide uint8 by 255)")
    bad = int((~torch.isfinite(image)).sum())
    if bad:
        raise ValueError(f"`{name}` has {bad} non-finite value(s) (NaN / inf) of {image.numel()}")
    lo, hi = float(image.min()), float(image.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"`{name}` values must be in [0, 1], got [{lo:.4g}, {hi:.4g}]")


def _image_tensor(image) -> torch.Tensor | None:
    """(3, H, W) float32 in [0, 1] view of the first frame (for the teacher's query synthesis)."""
    if image is None:
        return None
    if torch.is_tensor(image):
        t = image[0] if image.dim() == 4 else image
        return t.detach().to(torch.float32).cpu()
    import numpy as np

    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1).contiguous()


def check_instance_geometry(family, sampling: SamplingConfig, image) -> tuple[int, int]:
    """The video geometry one instance will use, checked against the model family: frame count, frame size (the
    rules of ``vlmteach_fast.first_frame.resolve_size``: ``sampling``'s size, a checkpoint's fixed size, the first
    frame's aspect ratio, the pipeline default) and whether the family needs / refuses a first frame.
    ``family``: a ``reasoner.VideoFamily`` (also one built from configs alone, ``loading.family_from_folder``);
    ``image``: as returned by ``load_image``. Returns (height, width); ValueError naming the setting otherwise."""
    from .first_frame import resolve_size

    first = _image_tensor(image)
    height, width = resolve_size(family, sampling.height, sampling.width,
                                 None if first is None else tuple(first.shape[1:]), sampling.max_area)
    family.check_geometry(sampling.num_frames, height, width)
    is_i2v = getattr(family, "is_i2v", None)
    pipe_name = type(family.pipe).__name__
    if is_i2v is True and image is None:
        raise ValueError(f"`image` is required for the image-to-video {pipe_name}, got None")
    if is_i2v is False and image is not None:
        raise ValueError(f"`image` must be None for the text-to-video {pipe_name}, got {type(image).__name__}")
    return height, width


def prepare_first_frame(reasoner: Reasoner, image, sampling: SamplingConfig):
    """Resolve the video geometry and bring the first frame to it (rules: ``vlmteach_fast.first_frame``).

    Args:
        reasoner: the ``Reasoner`` that will generate (its family knows size multiples and fixed sizes).
        image: PIL RGB / (3, H, W) tensor in [0, 1] / path / None.
        sampling: ``height``, ``width``, ``max_area``, ``fit`` and ``num_frames`` are used.

    Returns:
        ``(image, geometry)``: the first frame at the target size (as given when it already had it; else a
        (3, height, width) float32 tensor in [0, 1]) or None, and a JSON-ready record {"num_frames", "height",
        "width", "source" ([H, W] of the given frame or None), "fit", "scaled", "offset"}.
    Raises ``ValueError`` naming the argument when the model cannot make that geometry (before any model work).
    """
    from .first_frame import fit_image

    image = load_image(image)
    height, width = check_instance_geometry(reasoner.family, sampling, image)
    first = _image_tensor(image)
    geometry = {"num_frames": sampling.num_frames, "height": height, "width": width, "source": None, "fit": "none"}
    if first is not None:
        fitted, info = fit_image(first, height, width, sampling.fit)
        geometry.update(info)
        if info["fit"] != "none":
            image = fitted
    return image, geometry


def setup_instance(pipe, teacher, prompt: str, image=None, queries=None, sampling: SamplingConfig | None = None,
                   lora: LoRASpec | None = None, max_process: int = 3, seed_offset: int = 0,
                   check=None) -> InstanceSetup:
    """Check inputs, build/reuse the reasoner, get queries, encode conditions once.

    Args:
        pipe: a supported diffusers pipeline or a ``Reasoner``.
        teacher: a ``Teacher`` (``synthesize_queries`` + ``reward``).
        prompt: non-empty task prompt.
        image: first frame (PIL RGB / (3, H, W) tensor in [0, 1] / path) for image-to-video pipelines, else None.
        queries: ``Queries`` / list of questions (first = goal) / None to let the teacher write them.
        sampling: geometry and seed.
        lora: LoRA spec used when a new reasoner is built.
        max_process: process questions the teacher may write.
        seed_offset: added to ``sampling.seed`` (Best-of-N candidates).
        check: called as ``check(reasoner, image=, geometry=, queries=)`` (``queries`` None when the teacher will
            write them) once the geometry is known, before any model runs (``optimize``'s memory check).
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError(f"`prompt` must be a non-empty string, got {prompt!r}")
    if not (hasattr(teacher, "reward") and hasattr(teacher, "synthesize_queries")):
        raise TypeError(f"`teacher` must provide synthesize_queries() and reward() (the Teacher protocol), "
                        f"got {type(teacher).__name__}")
    sampling = sampling or SamplingConfig()
    reasoner = as_reasoner(pipe, lora)
    reasoner.set_attention_backend(sampling.attention_backend)  # fails here, before any model runs, if unusable
    # Geometry and image/pipeline mismatches fail here, before the teacher writes a single token.
    image, geometry = prepare_first_frame(reasoner, image, sampling)
    height, width = geometry["height"], geometry["width"]
    first = _image_tensor(image)
    if check is not None:
        check(reasoner, image=image, geometry=geometry, queries=None if queries is None else as_queries(queries))
    if queries is not None:
        q = as_queries(queries)
        warn_unless_yes_no(q)
    else:
        q = teacher.synthesize_queries(prompt, first, max_process=max_process)
    prepared = reasoner.prepare(prompt, image, sampling.negative_prompt, num_frames=sampling.num_frames,
                                height=height, width=width, seed=sampling.seed + seed_offset,
                                guidance_scale=sampling.guidance_scale,
                                max_sequence_length=sampling.max_sequence_length,
                                offload_text_encoder=sampling.offload_text_encoder)
    return InstanceSetup(reasoner, prompt, image, first, q, prepared, sampling, geometry)


def score_frames(teacher, frames: torch.Tensor, queries: Queries, meter=None):
    """Teacher reward on frames (B, F, 3, H, W) in [0, 1], without gradient; counted on ``meter`` (a ``CostMeter``)
    when given. Returns (RewardOutput, P(Yes) per query as a list)."""
    with torch.no_grad():
        out = teacher.reward(frames, queries)
    if meter is not None:
        meter.count_reward()
    return out, out.p_yes
